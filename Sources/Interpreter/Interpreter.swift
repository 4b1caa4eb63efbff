// Interpreter.swift: home of SMILScript — lexer, parser and evaluator (issue 4). Until they land,
// this target only names the language version the executable reports.

import Core

/// The language's version; it follows smil's.
public let languageVersion = smilVersion
