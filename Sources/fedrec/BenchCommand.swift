import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure speed; prints figures (tests never assert wall time).",
        subcommands: [
            BenchTrainStepCommand.self, BenchImportCommand.self, BenchIndexCommand.self, BenchRoundsCommand.self,
            BenchFuzzCommand.self, BenchMasksCommand.self,
        ]
    )
}
