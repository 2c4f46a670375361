/* First call of a lazily bound function (cmake/BerthLazyLibs.cmake), x86-64 SysV.
 * Entered by a jump from the function's trampoline with %r11 = its descriptor and the
 * caller's arguments untouched: saves every argument register (and %rax, which holds
 * the number of vector registers a variadic call uses), resolves the function, restores
 * them and jumps to it, so the caller's call lands in the library as if direct. */
	.section .text.berth_lazy_slow,"ax",@progbits
	.globl berth_lazy_slow
	.hidden berth_lazy_slow
	.type berth_lazy_slow,@function
	.p2align 4
berth_lazy_slow:
	/* Entry: %rsp = 8 mod 16 (the caller's return address). Seven pushes and 128
	 * bytes leave it 16-byte aligned for the call below. */
	pushq %rdi
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %r8
	pushq %r9
	pushq %rax
	subq $128, %rsp
	movdqu %xmm0, 0(%rsp)
	movdqu %xmm1, 16(%rsp)
	movdqu %xmm2, 32(%rsp)
	movdqu %xmm3, 48(%rsp)
	movdqu %xmm4, 64(%rsp)
	movdqu %xmm5, 80(%rsp)
	movdqu %xmm6, 96(%rsp)
	movdqu %xmm7, 112(%rsp)
	movq %r11, %rdi
	call berth_lazy_resolve
	movq %rax, %r11
	movdqu 0(%rsp), %xmm0
	movdqu 16(%rsp), %xmm1
	movdqu 32(%rsp), %xmm2
	movdqu 48(%rsp), %xmm3
	movdqu 64(%rsp), %xmm4
	movdqu 80(%rsp), %xmm5
	movdqu 96(%rsp), %xmm6
	movdqu 112(%rsp), %xmm7
	addq $128, %rsp
	popq %rax
	popq %r9
	popq %r8
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	jmp *%r11
	.size berth_lazy_slow, .-berth_lazy_slow
	.section .note.GNU-stack,"",@progbits
