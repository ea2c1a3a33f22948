import FedRecTensor
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct ConcurrentlyTests {
    static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Work that takes some CPU time; returns a value that depends on every step (so it is not optimised away).
    static func spin(_ seed: UInt64) -> UInt64 {
        var x = seed
        for _ in 0..<3_000_000 { x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
        return x
    }

    /// Both closures run to completion before `concurrently` returns, each on its own variables; the calling
    /// thread's CPU clock plus `HelperCPU` covers the CPU time both spent, wherever they ran.
    @Test func runsBothAndAccountsForTheHelperThread() {
        for round in 0..<5 {
            var first: UInt64 = 0
            var second: UInt64 = 0
            var firstCPU = 0.0
            var secondCPU = 0.0
            let callerStart = Self.threadCPUSeconds()
            let helperStart = HelperCPU.secondsOnThisThread
            concurrently {
                let start = Self.threadCPUSeconds()
                first = Self.spin(UInt64(round))
                firstCPU = Self.threadCPUSeconds() - start
            } _: {
                let start = Self.threadCPUSeconds()
                second = Self.spin(UInt64(round) + 100)
                secondCPU = Self.threadCPUSeconds() - start
            }
            let accounted = (Self.threadCPUSeconds() - callerStart) + (HelperCPU.secondsOnThisThread - helperStart)
            #expect(first == Self.spin(UInt64(round)) && second == Self.spin(UInt64(round) + 100))
            #expect(firstCPU > 0 && secondCPU > 0)
            // Clock granularity aside, the accounted time is at least what the two closures measured themselves.
            #expect(accounted >= (firstCPU + secondCPU) * 0.999 - 1e-5, "round \(round)")
        }
    }
}
