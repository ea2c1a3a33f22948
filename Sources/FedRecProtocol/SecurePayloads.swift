public import FedRecFederation
public import FedRecSecurity

/// What a client needs to take part in a secure-aggregation round, sealed inside its round assignment: the
/// round's SecAgg+ parameters (participants, graph, threshold, quantisation) and the Ed25519 identity keys of
/// every participant, in participant order, as enrolled with the coordinator (the PKI of the threat model:
/// clients trust the coordinator to relay the allow-listed keys; see "Threat model").
///
/// Layout: `"FRSA"` | weighting (u8: 0 examples, 1 uniform) | clipping report (u8: 0 no, 1 yes) |
/// stage deadline (u64 milliseconds, at most a day) | parameters length (u32) | parameters
/// (`SecureAggregationParameters.serialized()`) | key count (u32, = participants) | 32-byte keys.
public struct SecureRoundAssignment: Sendable, Hashable {
    static let magic: [UInt8] = Array("FRSA".utf8)

    public var parameters: SecureAggregationParameters
    public var identityKeys: [SigningPublicKey]
    /// Example-count weights (FedAvg) or one per client (DP-FedAvg).
    public var weighting: AggregationWeighting
    /// Adaptive clipping: each client appends its unclipped bit, times the clip range, to its input, so the
    /// coordinator learns only how many of the survivors were within the clip norm (`SecureInput`).
    public var reportsClipping: Bool
    /// How long the coordinator collects each stage (whole milliseconds): a client's stage upload call may last
    /// that long, and then some, before it gives up on the coordinator.
    public var stageDeadline: Duration

    /// Longest stage deadline a section may carry (a day).
    public static let maximumStageDeadline: Duration = .seconds(86_400)

    public init(
        parameters: SecureAggregationParameters, identityKeys: [SigningPublicKey], weighting: AggregationWeighting,
        reportsClipping: Bool = false, stageDeadline: Duration = .seconds(30)
    ) {
        self.parameters = parameters
        self.identityKeys = identityKeys
        self.weighting = weighting
        self.reportsClipping = reportsClipping
        self.stageDeadline = stageDeadline
    }

    func write(to w: inout ByteWriter) {
        w.raw(Self.magic)
        w.u8(weighting == .examples ? 0 : 1)
        w.u8(reportsClipping ? 1 : 0)
        w.u64(UInt64(min(max(stageDeadline, .zero), Self.maximumStageDeadline) / .milliseconds(1)))
        let parameters = self.parameters.serialized()
        w.u32(UInt32(parameters.count))
        w.raw(parameters)
        w.u32(UInt32(identityKeys.count))
        for key in identityKeys { w.raw(key.rawRepresentation) }
    }

    init(reading r: inout ByteReader) throws {
        guard Array(try r.take(4)) == Self.magic else { throw r.fail("bad secure-aggregation section magic") }
        switch try r.u8() {
        case 0: weighting = .examples
        case 1: weighting = .uniform
        case let other: throw r.fail("unknown weighting \(other)")
        }
        switch try r.u8() {
        case 0: reportsClipping = false
        case 1: reportsClipping = true
        case let other: throw r.fail("unknown clipping report flag \(other)")
        }
        let milliseconds = try r.u64()
        guard milliseconds <= UInt64(Self.maximumStageDeadline / .milliseconds(1)) else {
            throw r.fail("stage deadline of \(milliseconds) ms (at most a day)")
        }
        stageDeadline = .milliseconds(Int64(milliseconds))
        let length = Int(try r.u32())
        guard length <= 1 << 24 else { throw r.fail("secure-aggregation parameters of \(length) bytes") }
        do {
            parameters = try SecureAggregationParameters(serialized: Array(try r.take(length)))
            try parameters.validate()
        } catch let error as ProtocolError {
            throw error
        } catch {
            throw r.fail("secure-aggregation parameters: \(error)")
        }
        let count = Int(try r.u32())
        guard count == parameters.participants.count else {
            throw r.fail("\(count) identity keys for \(parameters.participants.count) participants")
        }
        var keys: [SigningPublicKey] = []
        keys.reserveCapacity(count)
        for _ in 0..<count {
            do {
                keys.append(try SigningPublicKey(rawRepresentation: try r.take(SigningPublicKey.byteCount)))
            } catch let error as ProtocolError { throw error } catch { throw r.fail("identity key: \(error)") }
        }
        identityKeys = keys
    }
}

/// Secure aggregation's flat input: the user-tower delta followed by the item-embedding gradient (row-major),
/// then, when the round asks for it (adaptive clipping), the client's unclipped bit as one more element. The bit
/// travels as 0 or the clip range c (the largest value the quantiser keeps), so the decoded sum over the survivors
/// divided by c is their count of unclipped updates, at the quantiser's finest relative resolution.
public enum SecureInput {
    /// The vector a client masks: delta, the dense item gradient, and, given `clippingReportScale` (the round's
    /// clip range c), c when the update was within the clip norm, else 0.
    public static func flatten(_ update: ClientUpdate, clippingReportScale: Float? = nil) -> [Float] {
        var values = update.userTowerDelta
        values.reserveCapacity(
            update.userTowerDelta.count + update.itemEmbeddingGradient.rows * update.itemEmbeddingGradient.columns
                + (clippingReportScale == nil ? 0 : 1))
        switch update.itemEmbeddingGradient {
        case .dense(let m): values += m.storage
        case .rowSparse: values += update.itemEmbeddingGradient.dense.storage
        }
        if let scale = clippingReportScale { values.append(update.unclipped == true ? scale : 0) }
        return values
    }

    /// Elements of the flat input of a run with these shapes.
    public static func length(_ shapes: PayloadShapes, reportsClipping: Bool = false) -> Int {
        shapes.userTowerCount + shapes.itemRows * shapes.dimension + (reportsClipping ? 1 : 0)
    }
}
