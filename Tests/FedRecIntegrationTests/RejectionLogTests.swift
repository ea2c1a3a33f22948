import FedRecCoordinator
import Testing

@Suite("Rejection log")
struct RejectionLogTests {
    @Test("keeps the most recent refusals in order and counts them all")
    func bounded() {
        var log = RejectionLog(capacity: 10)
        for i in 0..<1_000 {
            log.append(RejectionRecord(code: "malformedPayload", client: "c\(i)", round: 1, message: "bad \(i)"))
            #expect(log.recent.count == min(i + 1, 10))
        }
        #expect(log.total == 1_000)
        #expect(log.recent.map(\.client) == (990..<1_000).map { "c\($0)" })
    }
}
