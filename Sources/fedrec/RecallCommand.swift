import ArgumentParser

// Placeholder while the command is being written; replaced by its owner.
struct RecallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "recall", abstract: "Top-K recall for a history.")
    func run() async throws {
        throw ValidationError("'recall' is not implemented yet")
    }
}
