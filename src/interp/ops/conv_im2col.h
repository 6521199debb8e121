/* Transitional: the sliding-window geometry moved to interp/window.h and
 * im2col / col2im to tensor/im2col.h (issue 15).  This forwarding header
 * serves only the files being rewritten in parallel (src/curv/engine.c,
 * src/interp/autodiff.c); delete it once they include interp/window.h. */
#include "interp/window.h"
