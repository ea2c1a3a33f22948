import FedRecTensor
import Foundation
import Testing

@Suite struct JSONDecodingProblemTests {
    struct Document: Decodable {
        struct Inner: Decodable { var count: Int }
        var name: String
        var inner: Inner
    }

    static func problem(_ text: String) throws -> JSONDecodingProblem? {
        do {
            _ = try JSONDecoder().decode(Document.self, from: Data(text.utf8))
            return nil
        } catch {
            return JSONDecodingProblem(error, json: Data(text.utf8))
        }
    }

    @Test func namesTheFieldOrSaysWhatIsWrong() throws {
        let missing = try #require(try Self.problem(#"{"name": "a", "inner": {}}"#))
        #expect(missing == JSONDecodingProblem(field: "inner.count", message: "is missing"))
        let mistyped = try #require(try Self.problem(#"{"name": 3, "inner": {"count": 1}}"#))
        #expect(mistyped.field == "name")
        // Well-formed JSON with a number that does not fit an Int: not "invalid JSON".
        for number in ["2.5", "1e30"] {
            let fraction = try #require(try Self.problem(#"{"name": "a", "inner": {"count": \#(number)}}"#))
            #expect(fraction.description.contains("a number does not fit its field"), "\(fraction)")
        }
        // Text that is not JSON keeps the parser's words.
        let broken = try #require(try Self.problem(#"{"name": "a", "inner": "#))
        #expect(!broken.message.contains("does not fit"), "\(broken)")
        #expect(JSONDecodingProblem(CancellationError(), json: Data()) == nil)
    }
}
