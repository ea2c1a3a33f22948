public import FedRecFederation
public import FedRecSecurity
import Foundation

/// Figures of one completed round, as stored and as `fedrec status` prints them.
public struct RoundRecord: Sendable, Codable, Equatable {
    public var round: Int
    public var attempt: Int
    public var participants: Int
    public var examples: Int
    public var meanLoss: Double
    public var bytesReceived: Int
    public var bytesSent: Int
    public var seconds: Double
    /// Recall@20 on the held-out slice of the fold trained on, when evaluated this round.
    public var recallAt20: Double?
    public var rejected: Int
    public var stragglers: Int
}

/// The persisted coordinator state (`state.json` in the state folder) besides the model file it names.
///
/// Written after every completed round: first the model file `model-NNNNNN.safetensors` (temporary file +
/// rename), then `state.json` (temporary file + rename) which is the commit point, then older model files are
/// removed. A coordinator killed at any point restarts from the last `state.json`, i.e. the last completed round.
public struct PersistedState: Sendable, Codable {
    public static let format = "fedrec-coordinator-state"
    public static let formatVersion = 1

    public var format = Self.format
    public var formatVersion = Self.formatVersion
    /// Identifies the run: data set checksum, model shape, fold, seed, cohort and optimizers. A state folder of
    /// another run is refused rather than silently resumed.
    public var runFingerprint: String
    public var completedRounds: Int
    /// The round the next `RoundStateMachine` starts at.
    public var nextRound: Int
    /// Public identity lines of the enrolled clients.
    public var enrolled: [String]
    public var replayGuard: ReplayGuard
    public var serverOptimizer: ServerOptimizer
    /// File name (in the state folder) of the model after `completedRounds` rounds.
    public var modelFile: String
    public var rounds: [RoundRecord]
}

/// Reads and writes a state folder.
public struct StateStore: Sendable {
    public let directory: String
    public var statePath: String { directory + "/state.json" }

    public init(directory: String) { self.directory = directory }

    /// The state, or nil when the folder holds none yet.
    public func load() throws -> PersistedState? {
        guard FileManager.default.fileExists(atPath: statePath) else { return nil }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: statePath))
            let state = try JSONDecoder().decode(PersistedState.self, from: data)
            guard state.format == PersistedState.format, state.formatVersion == PersistedState.formatVersion else {
                throw CoordinatorError(
                    code: .state,
                    message: "\(statePath): not a \(PersistedState.format) v\(PersistedState.formatVersion) file")
            }
            return state
        } catch let error as CoordinatorError {
            throw error
        } catch {
            throw CoordinatorError(code: .state, message: "\(statePath): \(error)")
        }
    }

    /// Writes `state` atomically (temporary file in the same folder, fsync'd by `Data.write(.atomic)`, rename).
    public func save(_ state: PersistedState) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(state)
            let temporary = directory + "/.state.json.tmp-\(getpid())"
            try data.write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, statePath) == 0 else {
                throw CoordinatorError(code: .state, message: "rename to \(statePath) failed (errno \(errno))")
            }
            // Model files other than the current one are leftovers of earlier rounds.
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            where name.hasPrefix("model-") && name.hasSuffix(".safetensors") && name != state.modelFile {
                try? FileManager.default.removeItem(atPath: directory + "/" + name)
            }
        } catch let error as CoordinatorError {
            throw error
        } catch {
            throw CoordinatorError(code: .state, message: "\(statePath): \(error)")
        }
    }

    public static func modelFileName(completedRounds: Int) -> String {
        let digits = String(completedRounds)
        return "model-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".safetensors"
    }
}
