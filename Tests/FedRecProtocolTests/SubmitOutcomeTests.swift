import FedRecProtocol
import GRPCCore
import Testing

/// `Wire.takenClients`: which messages of a failed `SubmitUpdate` stream the coordinator took, from its metadata.
@Suite("SubmitUpdate outcome")
struct SubmitOutcomeTests {
    static func failure(accepted: Int?, refused: [String]) -> Metadata {
        var metadata: Metadata = [:]
        if let accepted { metadata.addString("\(accepted)", forKey: Wire.acceptedMetadataKey) }
        for id in refused { metadata.addBinary(Array(id.utf8), forKey: Wire.refusedMetadataKey) }
        return metadata
    }

    @Test("refused messages are skipped, messages after a break are not taken")
    func takenInStreamOrder() {
        let written = ["a", "b", "c", "d", "e"]
        // b refused, the rest taken.
        #expect(
            Wire.takenClients(written: written, failure: Self.failure(accepted: 4, refused: ["b"])) == [
                "a", "c", "d", "e",
            ])
        // a taken, b refused, the stream broke off in c (listed): d and e were never read.
        #expect(Wire.takenClients(written: written, failure: Self.failure(accepted: 1, refused: ["b", "c"])) == ["a"])
        // Broke off before d's header was read (not listed): a, b, c taken.
        #expect(
            Wire.takenClients(written: written, failure: Self.failure(accepted: 3, refused: [])) == ["a", "b", "c"])
        // Every message refused.
        #expect(Wire.takenClients(written: written, failure: Self.failure(accepted: 0, refused: written)).isEmpty)
    }

    @Test("without an accepted count (a transport failure) nothing is known to be taken")
    func transportFailure() {
        #expect(Wire.takenClients(written: ["a", "b"], failure: Self.failure(accepted: nil, refused: [])).isEmpty)
        var garbled: Metadata = [:]
        garbled.addString("many", forKey: Wire.acceptedMetadataKey)
        #expect(Wire.takenClients(written: ["a", "b"], failure: garbled).isEmpty)
    }

    @Test("a refused id names one message: a client id written twice is refused once")
    func repeatedClient() {
        // The same id twice in a stream (a replay next to the genuine message): only the refused copy is skipped.
        #expect(
            Wire.takenClients(written: ["a", "a", "b"], failure: Self.failure(accepted: 2, refused: ["a"])) == [
                "a", "b",
            ])
    }
}
