import ArgumentParser
import FedRecSecurity
import Foundation

/// `fedrec bench masks`: the secure-aggregation mask expansion against the raw libsodium key stream it is made of.
struct BenchMasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "masks",
        abstract: "Mask expansion speed (GB/s of ChaCha20 key stream) against raw crypto_stream_chacha20.",
        discussion: """
            Masking a vector of --words 32-bit words with --terms masks (a SecAgg+ client's k pairwise masks plus \
            its self-mask; the server removes as many) expands --terms key streams of 4 x --words bytes. 'raw' \
            calls crypto_stream_chacha20 once per term into a buffer, which is only the key stream; 'masking' is \
            MaskGenerator.accumulate, which expands the same streams tile by tile and adds them modulo 2^32 into \
            the vector, the work a round does. The defaults are the Flower workload's vector (124,224 user-tower \
            values and the 1,682 x 64 item gradient) and k + 1 = 11 terms (k = 10 neighbours at N = 32). One \
            thread; the median of --runs timed runs.
            """)

    @Option(parsing: .unconditional, help: "Words per vector.") var words: Int = 231_872
    @Option(parsing: .unconditional, help: "Masks per vector (k + 1).") var terms: Int = 11
    @Option(parsing: .unconditional, help: "Timed runs (the median is reported).") var runs: Int = 9

    func validate() throws {
        guard words > 0, terms > 0, runs > 0 else {
            throw ValidationError("--words, --terms and --runs must be positive")
        }
    }

    func run() async throws {
        let seeds = try (0..<terms).map { _ in try SecureBytes(randomCount: MaskGenerator.seedByteCount) }
        let maskTerms = try seeds.enumerated().map { try MaskTerm(seed: $1, negated: $0 % 2 == 1) }
        var buffer = [UInt32](repeating: 0, count: words)
        var target = [UInt32](repeating: 0, count: words)
        let bytes = Double(terms) * Double(words) * 4

        /// Median seconds of `runs` timed calls of `body` (after one untimed warm-up call).
        func median(_ body: () throws -> Void) rethrows -> Double {
            try body()
            var times: [Double] = []
            for _ in 0..<runs {
                let start = ContinuousClock.now
                try body()
                times.append((ContinuousClock.now - start) / .seconds(1))
            }
            return times.sorted()[runs / 2]
        }
        let raw = try median {
            try buffer.withUnsafeMutableBufferPointer { words in
                for seed in seeds { try MaskGenerator.expand(seed: seed, into: words) }
            }
        }
        let masking = try median { try MaskGenerator.accumulate(maskTerms, into: &target) }
        print(
            "fedrec bench masks: \(terms) masks of \(words) words (\(String(format: "%.2f", bytes / 1e6)) MB of key "
                + "stream), 1 thread, median of \(runs) runs")
        print(String(format: "raw crypto_stream_chacha20   %.2f GB/s  (%.2f ms)", bytes / raw / 1e9, raw * 1e3))
        print(String(format: "masking (accumulate)         %.2f GB/s  (%.2f ms)", bytes / masking / 1e9, masking * 1e3))
        print(String(format: "masking / raw speed          %.2f", raw / masking))
    }
}
