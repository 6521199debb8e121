/* Transitional: the objective moved to src/objective/ (issue 15).  This
 * forwarding header serves only the files being rewritten in parallel
 * (src/curv/engine.c); delete it once they include objective/objective.h. */
#include "objective/objective.h"
