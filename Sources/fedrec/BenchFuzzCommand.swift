import ArgumentParser
import FedRecFuzzing
import Foundation

/// `fedrec bench fuzz`: structure-aware mutation fuzzing of every parser of untrusted bytes, with figures.
struct BenchFuzzCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Fuzz every parser of untrusted bytes with mutated valid messages; exits 1 on a broken invariant.",
        discussion: """
            Targets: a sealed update envelope as the coordinator opens it (AEAD, replay guard), an update plaintext \
            behind a valid seal (decode and validation), a round assignment, a chunked payload, and the six \
            secure-aggregation messages. Each message is a valid seed put through one mutation (bit flips, boundary \
            words, NaN and infinities, truncation, extension, deletion, duplication, splicing, random bytes, or \
            none). Invariants: every refusal is a typed error; a modified or replayed envelope never opens; an \
            accepted update or assignment has the run's shapes, finite values and bounded norms and counts; an \
            accepted message re-encodes to the bytes received; modified advertised keys fail the server's \
            signature check. A trap would end the run.
            """)

    @Option(parsing: .unconditional, help: "Messages to fuzz (cycling through the targets).") var messages: Int =
        1_000_000
    @Option(parsing: .unconditional, help: "Random seed (of the mutations and the seed messages).") var seed: UInt64 = 1

    func validate() throws {
        guard messages > 0 else { throw ValidationError("--messages must be positive") }
    }

    func run() async throws {
        var fuzzer = try MessageFuzzer(seed: seed)
        let started = ContinuousClock.now
        fuzzer.run(messages: messages)
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let report = fuzzer.report
        print(
            "fedrec bench fuzz: \(report.messages) messages, seed \(seed), \(String(format: "%.1f", seconds)) s "
                + "(\(Int(Double(report.messages) / max(seconds, 1e-9))) messages/s)")
        func column(_ text: String, _ width: Int) -> String {
            text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
        }
        print(
            "\(column("target", 18)) \(column("messages", 9)) \(column("accepted", 9)) \(column("rejected", 9)) violations  refusals (most frequent first)"
        )
        for target in FuzzTarget.allCases {
            let tally = report.tallies[target] ?? FuzzTally()
            let refusals = tally.rejected.sorted { $0.value > $1.value }.prefix(4).map { "\($0.key) \($0.value)" }
            print(
                "\(column(target.rawValue, 18)) \(column("\(tally.messages)", 9)) \(column("\(tally.accepted)", 9)) "
                    + "\(column("\(tally.rejectedCount)", 9)) \(column("\(tally.violations)", 11)) "
                    + refusals.joined(separator: ", "))
        }
        guard report.violationCount == 0 else {
            print("\(report.violationCount) broken invariant(s); the first:")
            for violation in report.violations { print("  \(violation)") }
            throw ExitCode(1)
        }
        print("no broken invariant, no trap")
    }
}
