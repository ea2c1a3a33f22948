import FedRecCoordinator
import Testing

struct RefusalLogBudgetTests {
    /// A flood is logged up to the limit per window; the next window's first refusal reports how many were
    /// left out, and logging starts afresh.
    @Test func boundsTheLogLinesPerWindow() {
        var budget = RefusalLogBudget()
        let limit = RefusalLogBudget.limit
        let window = RefusalLogBudget.window
        var logged = 0
        for i in 0..<(limit + 250) {
            let (log, leftOut) = budget.admit(at: .milliseconds(i))
            #expect(leftOut == 0)
            if log { logged += 1 }
        }
        #expect(logged == limit)
        let (log, leftOut) = budget.admit(at: window + .seconds(1))
        #expect(log && leftOut == 250)
        // A quiet window reports nothing left out.
        let (later, none) = budget.admit(at: window * 3)
        #expect(later && none == 0)
    }
}
