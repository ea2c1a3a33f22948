import ArgumentParser
import FedRecCoordinator
import Foundation

/// `fedrec status`: per-round metrics from a coordinator's state folder.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Print a coordinator's per-round metrics from its state folder.")

    @Option(help: "The coordinator's state folder.") var state: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let loaded: PersistedState?
        do {
            loaded = try StateStore(directory: state).load()
        } catch {
            // Unreadable or corrupt: the coordinator's exit code for the same folder.
            writeUnchecked(STDERR_FILENO, "Error: \(error)\n")
            throw ExitCode(FederationExit.state)
        }
        guard let saved = loaded else {
            writeUnchecked(STDERR_FILENO, "Error: \(state) holds no coordinator state\n")
            throw ExitCode(FederationExit.state)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try encoder.encode(saved.rounds), as: UTF8.self))
            return
        }
        print(
            "completed rounds: \(saved.completedRounds); enrolled clients: \(saved.enrolled.count); model: \(state)/\(saved.modelFile)"
        )
        for record in saved.rounds { print(Self.line(record)) }
    }

    static func line(_ r: RoundRecord) -> String {
        let recall = r.recallAt20.map { String(format: "%.4f", $0) } ?? "-"
        let head = String(
            format: "round %4d  participants %4d  loss %8.4f  in %8.2f MB  out %8.2f MB  %7.2f s  recall@20 ",
            r.round, r.participants, r.meanLoss, Double(r.bytesReceived) / 1e6, Double(r.bytesSent) / 1e6, r.seconds)
        let extra = r.stragglers + r.rejected > 0 ? "  (stragglers \(r.stragglers), refused \(r.rejected))" : ""
        let epsilon = r.epsilon.map { String(format: "  epsilon %.3f", $0) } ?? ""
        let clipNorm = r.clipNorm.map { String(format: "  clip norm %.4g", $0) } ?? ""
        return head + recall + epsilon + clipNorm + extra
    }
}
