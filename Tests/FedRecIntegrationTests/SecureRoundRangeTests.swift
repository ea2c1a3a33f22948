import Testing

@testable import FedRecCoordinator

@Suite("Secure round quantiser range")
struct SecureRoundRangeTests {
    @Test("without adaptive clipping the configured range holds; with it, the range is at least the clip norm")
    func rangeFollowsTheClipNorm() {
        #expect(CoordinatorCore.quantiserRange(configured: 10, adaptiveClipNorm: nil) == 10)
        // Below the configured range (which starts at 10 x the initial clip norm) nothing changes...
        #expect(CoordinatorCore.quantiserRange(configured: 10, adaptiveClipNorm: 4) == 10)
        // ...above it, the range grows with the clip norm, so no coordinate of a clipped update is cut again.
        #expect(CoordinatorCore.quantiserRange(configured: 10, adaptiveClipNorm: 37.5) == 37.5)
    }
}
