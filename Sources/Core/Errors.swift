// Errors.swift: the errors Core throws. Library code never prints or exits; it throws these.

/// An error raised by Core: bad shapes, bad arguments, malformed files.
public enum CoreError: Error, CustomStringConvertible, Equatable {
    /// An operation was given tensors whose shapes do not fit together.
    case shapeMismatch(op: String, String)
    /// An argument has a value the operation cannot accept.
    case invalidArgument(op: String, String)
    /// A file could not be read, written or parsed.
    case file(path: String, String)
    /// A state dict does not fit a module.
    case stateDict(String)
    /// Autograd was asked for something it cannot do.
    case autograd(String)
    /// The computation stopped at a safe point because `Interrupt.request()` was called (Ctrl-C).
    case interrupted

    public var description: String {
        switch self {
        case .shapeMismatch(let op, let msg): return "\(op): \(msg)"
        case .invalidArgument(let op, let msg): return "\(op): \(msg)"
        case .file(let path, let msg): return "\(path): \(msg)"
        case .stateDict(let msg): return "load_state_dict: \(msg)"
        case .autograd(let msg): return "autograd: \(msg)"
        case .interrupted: return "interrupted"
        }
    }
}

/// Formats a shape as PyTorch does in messages: `[2, 3, 4]`.
@inlinable public func shapeString(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}

/// Argument checks for constructors and operations. Each throws `CoreError.invalidArgument` naming
/// the operation, the argument and the value it got.
enum Require {
    static func positive(_ value: Int, _ name: String, op: String) throws {
        guard value > 0 else { throw CoreError.invalidArgument(op: op, "\(name) must be positive, got \(value)") }
    }

    static func nonNegative(_ value: Int, _ name: String, op: String) throws {
        guard value >= 0 else { throw CoreError.invalidArgument(op: op, "\(name) must be non-negative, got \(value)") }
    }

    static func inRange(_ value: Float, _ range: ClosedRange<Float>, _ name: String, op: String) throws {
        guard range.contains(value) else {
            throw CoreError.invalidArgument(op: op, "\(name) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
    }
}
