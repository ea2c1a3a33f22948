import ArgumentParser
import Foundation

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

    /// Parses and runs like ArgumentParser's own `main`, except for a `ValidationError` a command throws while
    /// running: it concerns the command's input (a missing file, a bad id), not the command line, so it is printed
    /// without the root command's usage line (which named no subcommand), still with exit code 64.
    static func main() async {
        ChildProcess.stopWithParent()
        let parsed: any ParsableCommand
        do {
            parsed = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var command = parsed as? any AsyncParsableCommand {
                try await command.run()
            } else {
                var command = parsed
                try command.run()
            }
        } catch let error as ValidationError {
            writeUnchecked(STDERR_FILENO, "Error: \(message(for: error))\n")
            Foundation.exit(exitCode(for: error).rawValue)
        } catch {
            exit(withError: error)  // a command group's help, a command's ExitCode, other errors: as before
        }
    }
}
