// AST.swift: SMILScript's syntax tree. Every node carries its source location.

/// An expression.
public indirect enum Expr {
    case int(Int, SourceLocation)
    case float(Double, SourceLocation)
    case string([InterpolatedPart], SourceLocation)
    case bool(Bool, SourceLocation)
    case nilLiteral(SourceLocation)
    case list([Expr], SourceLocation)
    case dict([(Expr, Expr)], SourceLocation)
    case name(String, SourceLocation, length: Int)
    case unary(String, Expr, SourceLocation)
    case binary(String, Expr, Expr, SourceLocation)
    /// `a and b`, `a or b` (short-circuit).
    case logical(String, Expr, Expr, SourceLocation)
    case range(Expr, Expr, inclusive: Bool, SourceLocation)
    case call(Expr, [Argument], SourceLocation)
    case index(Expr, [IndexItem], SourceLocation)
    case member(Expr, String, SourceLocation, length: Int)
    case function(FunctionDecl)

    public var location: SourceLocation {
        switch self {
        case .int(_, let l), .float(_, let l), .string(_, let l), .bool(_, let l), .nilLiteral(let l), .list(_, let l),
             .dict(_, let l), .name(_, let l, _), .unary(_, _, let l), .binary(_, _, _, let l), .logical(_, _, _, let l),
             .range(_, _, _, let l), .call(_, _, let l), .index(_, _, let l), .member(_, _, let l, _):
            return l
        case .function(let f): return f.location
        }
    }
}

/// A piece of an interpolated string.
public enum InterpolatedPart {
    case text(String)
    case expression(Expr, format: String?)
}

/// A call argument, positional or labelled.
public struct Argument {
    public var label: String?
    public var value: Expr
    public var location: SourceLocation
}

/// One subscript: an index or a slice `a:b:c` (each part optional).
public enum IndexItem {
    case single(Expr)
    case slice(Expr?, Expr?, Expr?)
}

/// A parameter with an optional default.
public struct FunctionParameter {
    public var name: String
    public var defaultValue: Expr?
}

/// A named or anonymous function.
public final class FunctionDecl {
    public let name: String
    public let parameters: [FunctionParameter]
    public let body: [Stmt]
    public let location: SourceLocation
    public init(name: String, parameters: [FunctionParameter], body: [Stmt], location: SourceLocation) {
        self.name = name
        self.parameters = parameters
        self.body = body
        self.location = location
    }
}

/// A statement.
public indirect enum Stmt {
    case expression(Expr, printed: Bool, expect: String?)
    case declare(String, Expr, constant: Bool, SourceLocation)
    case assign(Expr, String, Expr, SourceLocation)
    case function(FunctionDecl)
    case ifElse([(Expr, [Stmt])], [Stmt]?, SourceLocation)
    case whileLoop(Expr, [Stmt], SourceLocation)
    case forLoop(String, Expr, [Stmt], SourceLocation)
    case breakLoop(SourceLocation)
    case continueLoop(SourceLocation)
    case returnValue(Expr?, SourceLocation)
    case assertion(Expr, Expr?, SourceLocation)
    case importFile(String, alias: String, SourceLocation)
    case testBlock(String, [Stmt], SourceLocation)

    public var location: SourceLocation {
        switch self {
        case .expression(let e, _, _): return e.location
        case .declare(_, _, _, let l), .assign(_, _, _, let l), .ifElse(_, _, let l), .whileLoop(_, _, let l),
             .forLoop(_, _, _, let l), .breakLoop(let l), .continueLoop(let l), .returnValue(_, let l),
             .assertion(_, _, let l), .importFile(_, _, let l), .testBlock(_, _, let l):
            return l
        case .function(let f): return f.location
        }
    }
}
