import ArgumentParser

// Placeholder while the command is being written; replaced by its owner.
struct BenchTrainStepCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train-step", abstract: "Training examples per second of one step.")
    func run() async throws {
        throw ValidationError("'train-step' is not implemented yet")
    }
}
