import ArgumentParser

@main
struct FedRec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fedrec",
        abstract: "Federated, privacy-preserving training of two-tower recall models.",
        version: "0.1.0",
        subcommands: [
            DataCommand.self,
            TrainCommand.self,
            EvaluateCommand.self,
            RecallCommand.self,
            ItemsCommand.self,
            KeysCommand.self,
            CoordinatorCommand.self,
            ClientCommand.self,
            StatusCommand.self,
            DemoCommand.self,
            SimulateCommand.self,
            BenchCommand.self,
        ]
    )
}
