import FedRecTensor
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where a process spends its CPU time, for `fedrec bench rounds` and `--stats FILE`.
///
/// Each measured section is synchronous code (no suspension inside), timed with the calling thread's CPU clock
/// (`CLOCK_THREAD_CPUTIME_ID`) plus what helper threads spent for it (`concurrently`), so time a section spends
/// waiting for a core on a busy machine is not counted.
/// Whatever the process burns outside the measured sections (gRPC, HTTP/2, protobuf, chunking, polling, the
/// runtime) is reported as `transport`: the process's total CPU time (`getrusage`) minus the measured phases.
public final class PhaseMeter: Sendable {
    public enum Phase: String, Sendable, CaseIterable, Codable {
        /// Clients' local training (forward, backward, local optimizer steps).
        case training
        /// Sealing and opening envelopes (XChaCha20-Poly1305), key agreement, signatures.
        case crypto
        /// Encoding and decoding payloads (weights to bytes and back), SHA-256 of chunks.
        case codec
        /// Validating and adding updates, the server optimizer and the central item-tower step.
        case aggregation
        /// Recall@20 evaluations.
        case evaluation
        /// Checkpoints: the model file and state.json.
        case persistence
    }

    private struct Baseline {
        var cpuSeconds: Double = 0
        var started = ContinuousClock.now
        var marked = false
    }

    private let totals = Mutex<[Phase: Double]>([:])
    private let baseline = Mutex(Baseline())
    private let memoryPeaks = Mutex(MemoryFigures())

    /// When memory was last sampled (reading smaps_rollup walks the page tables: ~1 ms, so at most once a second).
    private let lastMemorySample = Mutex<ContinuousClock.Instant?>(nil)
    private let memorySampling = Mutex(true)

    /// Whether `sampleMemory()` reads the memory figures (true by default). A process that writes no report
    /// (`--stats`) turns it off: with 33 processes on 2 cores the once-a-second reads cost about 2% of the CPU.
    public var samplesMemory: Bool {
        get { memorySampling.withLock { $0 } }
        set { memorySampling.withLock { $0 = newValue } }
    }

    /// Private and proportional memory from `/proc/self/smaps_rollup`.
    struct MemoryFigures {
        /// Unique set size: pages only this process maps (Private_Clean + Private_Dirty).
        var privateBytes = 0
        /// Proportional set size: private pages plus each shared page divided by its sharers.
        var proportionalBytes = 0
    }

    public init() {}

    /// Starts the figures afresh (phase totals, CPU and wall baselines) the first time it is called, so start-up
    /// work (loading the data set, enrolment) stays out of them. Later calls do nothing.
    public func beginMeasuring() {
        let cpu = Self.processCPUSeconds()
        baseline.withLock { b in
            guard !b.marked else { return }
            b = Baseline(cpuSeconds: cpu, started: .now, marked: true)
            totals.withLock { $0 = [:] }
        }
    }

    /// Runs `body`, adding its thread CPU time to `phase`, with what helper threads spent for its `concurrently`
    /// calls.
    public func measure<T>(_ phase: Phase, _ body: () throws -> T) rethrows -> T {
        let start = HelperCPU.threadSecondsWithHelpers
        defer {
            let spent = HelperCPU.threadSecondsWithHelpers - start
            totals.withLock { $0[phase, default: 0] += spent }
        }
        return try body()
    }

    /// Samples this process's private (unique) and proportional memory and keeps the largest seen; processes
    /// call it once per round, at their fullest (it samples at most once a second), and `report()` samples once
    /// more. Linux only (elsewhere no-op); nothing when `samplesMemory` is off.
    public func sampleMemory(force: Bool = false) {
        guard samplesMemory else { return }
        let due = lastMemorySample.withLock { last in
            let now = ContinuousClock.now
            guard force || last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        guard due, let now = Self.readMemoryFigures() else { return }
        memoryPeaks.withLock { peak in
            peak.privateBytes = max(peak.privateBytes, now.privateBytes)
            peak.proportionalBytes = max(peak.proportionalBytes, now.proportionalBytes)
        }
    }

    static func readMemoryFigures() -> MemoryFigures? {
        guard let text = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8) else { return nil }
        var figures = MemoryFigures()
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kib = Int(fields[1]) else { continue }
            switch fields[0] {
            case "Private_Clean:", "Private_Dirty:": figures.privateBytes += kib * 1024
            case "Pss:": figures.proportionalBytes = kib * 1024
            default: break
            }
        }
        return figures
    }

    /// CPU seconds per phase so far, the process's total CPU seconds, wall seconds and peak resident memory.
    /// Figures since `beginMeasuring()` (or since the meter was made, if it never was called).
    public func report() -> PhaseReport {
        sampleMemory(force: true)
        let memory = memoryPeaks.withLock { $0 }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let (base, started) = baseline.withLock { ($0.cpuSeconds, $0.started) }
        let cpu = Self.seconds(usage.ru_utime) + Self.seconds(usage.ru_stime) - base
        let measured = totals.withLock { $0 }
        var phases: [String: Double] = [:]
        for phase in Phase.allCases { phases[phase.rawValue] = measured[phase, default: 0] }
        phases["transport"] = max(0, cpu - measured.values.reduce(0, +))
        let wall = ContinuousClock.now - started
        return PhaseReport(
            cpuSeconds: cpu, wallSeconds: wall.seconds,
            peakResidentBytes: Int(usage.ru_maxrss) * 1024, phaseCPUSeconds: phases,
            peakPrivateBytes: memory.privateBytes > 0 ? memory.privateBytes : nil,
            peakProportionalBytes: memory.proportionalBytes > 0 ? memory.proportionalBytes : nil)
    }

    private static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    private static func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
}

/// A process's figures as written by `--stats FILE` (JSON).
public struct PhaseReport: Sendable, Codable, Equatable {
    /// User + system CPU seconds of the whole process.
    public var cpuSeconds: Double
    public var wallSeconds: Double
    /// Peak resident set size (`ru_maxrss`): shared library pages included, counted in full by every process.
    public var peakResidentBytes: Int
    /// CPU seconds per `PhaseMeter.Phase` raw value, plus `transport` (everything not measured).
    public var phaseCPUSeconds: [String: Double]
    /// Largest private memory sampled (unique set size: pages no other process maps), nil where unknown.
    public var peakPrivateBytes: Int?
    /// Largest proportional set size sampled (private pages plus a share of shared ones), nil where unknown.
    public var peakProportionalBytes: Int?

    public init(
        cpuSeconds: Double, wallSeconds: Double, peakResidentBytes: Int, phaseCPUSeconds: [String: Double],
        peakPrivateBytes: Int? = nil, peakProportionalBytes: Int? = nil
    ) {
        self.cpuSeconds = cpuSeconds
        self.wallSeconds = wallSeconds
        self.peakResidentBytes = peakResidentBytes
        self.phaseCPUSeconds = phaseCPUSeconds
        self.peakPrivateBytes = peakPrivateBytes
        self.peakProportionalBytes = peakProportionalBytes
    }

    /// Writes the report as JSON (temporary file + rename).
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    public static func read(from path: String) throws -> PhaseReport {
        try JSONDecoder().decode(PhaseReport.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
