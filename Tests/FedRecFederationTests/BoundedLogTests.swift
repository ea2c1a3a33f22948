import FedRecFederation
import Testing

@Suite("Bounded log")
struct BoundedLogTests {
    @Test("keeps the most recent entries in order and counts them all")
    func keepsTheMostRecent() {
        var log = BoundedLog<Int>(capacity: 10)
        #expect(log.isEmpty && log.total == 0)
        for i in 0..<1_000 {
            log.append(i)
            #expect(log.count == min(i + 1, 10))
            #expect(log.last == i)
        }
        #expect(log.total == 1_000)
        #expect(log.recent == Array(990..<1_000))
        #expect(Array(log.reversed().prefix(3)) == [999, 998, 997])
    }

    @Test("appending another log keeps its newest entries last and adds its whole count")
    func appendsAnotherLog() {
        var first = BoundedLog<Int>(capacity: 4)
        for i in 0..<3 { first.append(i) }
        var second = BoundedLog<Int>(capacity: 2)
        for i in 100..<105 { second.append(i) }
        first.append(contentsOf: second)
        #expect(first.recent == [1, 2, 103, 104])
        #expect(first.total == 3 + 5)
    }

    @Test("mapping keeps the capacity and the count of entries no longer kept")
    func mapping() {
        var log = BoundedLog<Int>(capacity: 3)
        for i in 0..<7 { log.append(i) }
        let mapped = log.mapped { "e\($0)" }
        #expect(mapped.recent == ["e4", "e5", "e6"])
        #expect(mapped.capacity == 3 && mapped.total == 7)
    }
}
