import ArgumentParser

// Placeholder while the command is being written; replaced by its owner.
struct EvaluateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "evaluate", abstract: "Evaluate a model per fedrec-eval-v1.")
    func run() async throws {
        throw ValidationError("'evaluate' is not implemented yet")
    }
}
