import ArgumentParser

// Placeholder while the command is being written; replaced by its owner.
struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Train the two-tower model centrally.")
    func run() async throws {
        throw ValidationError("'train' is not implemented yet")
    }
}
