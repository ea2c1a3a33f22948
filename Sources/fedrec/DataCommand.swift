import ArgumentParser

// Placeholder while the command is being written; replaced by its owner.
struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data", abstract: "Import, clean and split behaviour data.")
    func run() async throws {
        throw ValidationError("'data' is not implemented yet")
    }
}
