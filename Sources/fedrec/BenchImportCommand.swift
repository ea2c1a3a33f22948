import ArgumentParser

// Placeholder while the command is being written; replaced by its owner.
struct BenchImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Data-import rows per second.")
    func run() async throws {
        throw ValidationError("'import' is not implemented yet")
    }
}
