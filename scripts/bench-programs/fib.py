# fib(32) by naive recursion, the CPython side of scripts/bench interp.
def fib(n):
    if n < 2: return n
    return fib(n - 1) + fib(n - 2)
print(fib(32))
