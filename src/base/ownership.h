/* The ownership rule, stated once for every header of curvscope.
 *
 * A prototype's comment says who owns each pointer it takes or gives, in
 * one of three words; what a comment does not say is the default.
 *
 *   borrows   (the default, usually unsaid) The callee reads or writes
 *             through the pointer during the call only; the caller keeps
 *             ownership and may free the object once the call returns.
 *             A function or object that keeps a borrowed pointer after the
 *             call says so: "borrows g, which must outlive it" (a plan and
 *             its graph).  Strings and arrays inside an argument are
 *             borrowed the same way.
 *   consumes  Ownership passes to the callee on every return, success or
 *             failure: the caller must not use or free the object after.
 *   owned     What a function returns or writes to an out-parameter is the
 *             caller's, freed with its type's one free function:
 *             "*out is owned (cs_graph_free)", "an owned tensor
 *             (cs_tensor_free)".  Each type has exactly one `x_free`, which
 *             also accepts an object its `x_init` / `x_create` left behind
 *             on failure; a failed constructor has already freed what it
 *             made, so there is nothing more to free.
 *
 * Memory from an arena (base/arena.h) is owned by the arena and freed with
 * it, never one piece at a time.  A cs_tensor owns its data only when
 * owns_data is set (views into plans and arenas do not): cs_tensor_free
 * frees owned data and resets the tensor in both cases.
 *
 * Other headers refer here ("base/ownership.h") instead of restating the
 * rule; they say only which of the three words applies. */
#ifndef CS_BASE_OWNERSHIP_H
#define CS_BASE_OWNERSHIP_H
#endif
