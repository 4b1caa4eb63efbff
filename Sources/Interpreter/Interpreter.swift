// Interpreter: SMILScript.
