import FedRecProtocol
import Foundation
import Testing

@Suite("PhaseMeter")
struct PhaseMeterTests {
    @Test("phases add up within the process's CPU time, and memory figures are ordered private <= PSS <= RSS")
    func reportIsConsistent() throws {
        let meter = PhaseMeter()
        meter.beginMeasuring()
        // Burn some CPU in a measured phase and touch 8 MiB so the memory figures have something to see.
        var buffer = [UInt8](repeating: 1, count: 8 << 20)
        let sum = meter.measure(.training) { buffer.withUnsafeMutableBytes { b in b.reduce(0) { $0 &+ Int($1) } } }
        #expect(sum == 8 << 20)
        meter.sampleMemory()
        buffer[0] = 2
        let report = meter.report()
        let training = try #require(report.phaseCPUSeconds["training"])
        #expect(training > 0 && training <= report.cpuSeconds + 1e-3)
        #expect(report.phaseCPUSeconds.values.allSatisfy { $0 >= 0 })
        #if os(Linux)
            let privateBytes = try #require(report.peakPrivateBytes)
            let proportional = try #require(report.peakProportionalBytes)
            #expect(privateBytes >= 8 << 20)
            #expect(privateBytes <= proportional && proportional <= report.peakResidentBytes)
        #endif
        // The JSON written by `--stats` reads back equal, and a report without the memory fields still decodes.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("phase-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try report.write(to: path)
        #expect(try PhaseReport.read(from: path) == report)
        let older = #"{"cpuSeconds":1,"wallSeconds":2,"peakResidentBytes":3,"phaseCPUSeconds":{}}"#
        try older.write(toFile: path, atomically: true, encoding: .utf8)
        let decoded = try PhaseReport.read(from: path)
        #expect(decoded.peakPrivateBytes == nil && decoded.peakResidentBytes == 3)
    }

    @Test("a meter that does not sample memory reports no private or proportional figures")
    func memorySamplingOff() {
        let meter = PhaseMeter()
        meter.samplesMemory = false
        meter.sampleMemory()
        let report = meter.report()
        #expect(report.peakPrivateBytes == nil && report.peakProportionalBytes == nil)
        #expect(report.peakResidentBytes > 0)
    }
}
