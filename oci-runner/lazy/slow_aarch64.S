/* First call of a lazily bound function (cmake/BerthLazyLibs.cmake), AArch64 AAPCS64.
 * Entered by a branch from the function's trampoline with x16 = its descriptor and the
 * caller's arguments untouched: saves the argument registers (x0-x7, x8 for an indirect
 * result, q0-q7), resolves the function, restores them and branches to it with the
 * caller's x30, so the call lands in the library as if direct. */
	.section .text.berth_lazy_slow,"ax",%progbits
	.globl berth_lazy_slow
	.hidden berth_lazy_slow
	.type berth_lazy_slow,%function
	.p2align 2
berth_lazy_slow:
	stp x29, x30, [sp, #-224]!
	mov x29, sp
	stp x0, x1, [sp, #16]
	stp x2, x3, [sp, #32]
	stp x4, x5, [sp, #48]
	stp x6, x7, [sp, #64]
	str x8, [sp, #80]
	stp q0, q1, [sp, #96]
	stp q2, q3, [sp, #128]
	stp q4, q5, [sp, #160]
	stp q6, q7, [sp, #192]
	mov x0, x16
	bl berth_lazy_resolve
	mov x16, x0
	ldp q6, q7, [sp, #192]
	ldp q4, q5, [sp, #160]
	ldp q2, q3, [sp, #128]
	ldp q0, q1, [sp, #96]
	ldr x8, [sp, #80]
	ldp x6, x7, [sp, #64]
	ldp x4, x5, [sp, #48]
	ldp x2, x3, [sp, #32]
	ldp x0, x1, [sp, #16]
	ldp x29, x30, [sp], #224
	br x16
	.size berth_lazy_slow, .-berth_lazy_slow
	.section .note.GNU-stack,"",%progbits
