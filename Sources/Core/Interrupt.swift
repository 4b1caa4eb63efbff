// Interrupt.swift: Ctrl-C as a request that long computations honour at safe points.

import CKernels

/// A process-wide request to stop the running computation (Ctrl-C in the REPL). The host sets it,
/// from a signal handler if need be; the interpreter reads it between statements, loop iterations
/// and calls, modules before and after each layer, autograd between the graph's nodes, and the
/// claimed-tile kernels before each tile (a worker that sees it claims no more). Whoever reads it
/// throws `CoreError.interrupted` before any result is kept, so an interrupted statement leaves
/// the workspace as it was; an optimizer's step never reads it, so no parameter is left
/// half-updated.
public enum Interrupt {
    /// Whether a stop has been requested and not yet cleared. Inlinable: the interpreter reads it
    /// on every call and loop iteration.
    @inlinable public static var isRequested: Bool { smil_interrupt_requested() != 0 }

    /// Requests a stop. Async-signal-safe (one atomic store).
    public static func request() { smil_interrupt_set(1) }

    /// Clears the request (the host does so before it runs the next entry).
    public static func clear() { smil_interrupt_set(0) }

    /// A safe point: throws `CoreError.interrupted` when a stop has been requested.
    @inline(__always) public static func check() throws {
        if smil_interrupt_requested() != 0 { throw CoreError.interrupted }
    }
}
