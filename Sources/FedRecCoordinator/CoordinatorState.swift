public import FedRecFederation
public import FedRecModel
public import FedRecSecurity
public import FedRecTensor
import Foundation
import Synchronization

/// Figures of one completed round, as stored and as `fedrec status` prints them.
public struct RoundRecord: Sendable, Codable, Equatable {
    public var round: Int
    public var attempt: Int
    public var participants: Int
    public var examples: Int
    /// Example-weighted mean of the participants' local losses; 0 under secure aggregation (not revealed).
    public var meanLoss: Double
    public var bytesReceived: Int
    public var bytesSent: Int
    public var seconds: Double
    /// Recall@20 on the held-out slice of the fold trained on, when evaluated this round.
    public var recallAt20: Double?
    public var rejected: Int
    public var stragglers: Int
    /// Epsilon spent after this round (at the run's delta), when differential privacy is on.
    public var epsilon: Double? = nil
    /// Adaptive clipping: the clip norm this round's clients clipped to.
    public var clipNorm: Double? = nil
    /// Seconds from the start of this coordinator process's round loop to this round's close (after the server
    /// step and any evaluation). Differences between consecutive rounds are the full round period, checkpoint
    /// and payload encoding included. Nil in states written before this field existed.
    public var finishedAt: Double? = nil
}

/// The persisted coordinator state (`state.json` in the state folder) besides the model file it names.
///
/// Written after every completed round: first the model file `model-NNNNNN.safetensors` (temporary file +
/// rename), then `state.json` (temporary file + rename) which is the commit point, then older model files are
/// removed, except one per kind kept as the spare the next checkpoint overwrites and renames (`.spare-*`). A coordinator killed at any point restarts from the last `state.json`, i.e. the last completed round.
public struct PersistedState: Sendable, Codable {
    public static let format = "fedrec-coordinator-state"
    public static let formatVersion = 2

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
    /// The server optimizer's configuration and step count; its moments are in `optimizerFile`.
    public var serverOptimizer: ServerOptimizer
    /// File name (in the state folder) of the model after `completedRounds` rounds.
    public var modelFile: String
    /// File name (in the state folder) of the optimizers' moments after `completedRounds` rounds.
    public var optimizerFile: String
    public var rounds: [RoundRecord]
    /// The privacy ledger (rounds spent per mechanism) when differential privacy is on.
    public var privacy: PrivacyLedger? = nil
    /// Adaptive clipping's state (the next round's clip norm) when the run adapts it.
    public var adaptiveClipping: AdaptiveClippingState? = nil

    /// The largest round number a state may name (far beyond any run; keeps round arithmetic from overflowing).
    static let maximumRound = 1 << 40

    /// The first field whose value no coordinator writes, with what is wrong with it; nil when every value is
    /// one a run can have. A state edited by hand (or damaged in a way JSON still parses) is refused with it
    /// instead of trapping, or silently misleading, later.
    public var problem: (field: String, message: String)? {
        if !(0...Self.maximumRound).contains(nextRound) {
            return ("nextRound", "\(nextRound) is not a round number (0...\(Self.maximumRound))")
        }
        if !(0...nextRound).contains(completedRounds) {
            return ("completedRounds", "\(completedRounds) must lie in 0...nextRound (\(nextRound))")
        }
        if rounds.count > completedRounds {
            return ("rounds", "\(rounds.count) records for \(completedRounds) completed round(s)")
        }
        if let bad = rounds.first(where: { !(0..<nextRound).contains($0.round) || $0.participants < 0 }) {
            return ("rounds", "a record of round \(bad.round) with \(bad.participants) participant(s)")
        }
        if let problem = serverOptimizer.configuration.problem { return ("serverOptimizer.configuration", problem) }
        if serverOptimizer.step < 0 { return ("serverOptimizer.step", "\(serverOptimizer.step) must be >= 0") }
        for (field, name) in [("modelFile", modelFile), ("optimizerFile", optimizerFile)]
        where !StateStore.isCheckpointFile(name) {
            return (field, "'\(name)' is not a checkpoint file name of this folder")
        }
        if let privacy {
            if let entry = privacy.history.first(where: {
                $0.steps < 0 || !($0.samplingRate > 0 && $0.samplingRate <= 1)
                    || !($0.noiseMultiplier > 0 && $0.noiseMultiplier.isFinite)
            }) {
                return (
                    "privacy.history",
                    "an entry of \(entry.steps) step(s) at q \(entry.samplingRate), z \(entry.noiseMultiplier)"
                )
            }
        }
        if let clipping = adaptiveClipping, !(clipping.clipNorm > 0 && clipping.clipNorm.isFinite) {
            return ("adaptiveClipping.clipNorm", "\(clipping.clipNorm) must be positive")
        }
        return nil
    }
}

/// Round records with their JSON, in order (shared by the copies of one `StateStore`).
final class RecordJSONCache: Sendable {
    let entries = Mutex<[(record: RoundRecord, json: [UInt8])]>([])
}

/// An open descriptor holding a `flock`; `release()` (or the last reference going) closes it, releasing the lock.
final class FolderLock: Sendable {
    private let descriptor: Mutex<Int32?>
    init(descriptor: Int32) { self.descriptor = Mutex(descriptor) }
    /// Idempotent.
    func release() {
        descriptor.withLock { open in
            if let fd = open { close(fd) }
            open = nil
        }
    }
    deinit { release() }
}

/// Reads and writes a state folder.
public struct StateStore: Sendable {
    public let directory: String
    public var statePath: String { directory + "/state.json" }
    /// JSON of the round records saved so far: a run's records only grow, so each is encoded once rather than
    /// all of them on every round (which made a checkpoint's cost grow with the round count).
    let recordCache = RecordJSONCache()

    /// The lock `claim()` took (nil before): held until `releaseClaim()` or until no copy of this store lives.
    var folderLock: FolderLock? = nil

    /// Releases the folder `claim()` took (a coordinator whose run ended; another may take the folder).
    public func releaseClaim() { folderLock?.release() }

    public init(directory: String) { self.directory = directory }

    /// The bytes of `state.json` for `state`: exactly `JSONEncoder` with sorted keys, but with the round
    /// records' JSON reused from earlier saves.
    func encoded(_ state: PersistedState) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var head = state
        head.rounds = []
        let outer = Array(try encoder.encode(head))
        // With sorted keys the top-level "rounds" is followed by "runFingerprint"; no other key of the schema is.
        let marker = Array(#""rounds":[],"runFingerprint":"#.utf8)
        let found = outer.indices.filter { outer[$0] == marker[0] && outer[$0...].starts(with: marker) }
        guard found.count == 1, let at = found.first else { return Array(try encoder.encode(state)) }
        let records = try recordCache.entries.withLock { cache in
            if cache.count > state.rounds.count || !zip(cache, state.rounds).allSatisfy({ $0.record == $1 }) {
                cache = []
            }
            for record in state.rounds[cache.count...] { cache.append((record, Array(try encoder.encode(record)))) }
            var joined: [UInt8] = []
            joined.reserveCapacity(cache.reduce(0) { $0 + $1.json.count + 1 })
            for (index, entry) in cache.enumerated() {
                if index > 0 { joined.append(UInt8(ascii: ",")) }
                joined += entry.json
            }
            return joined
        }
        let open = at + #""rounds":["#.utf8.count
        return Array(outer[..<open]) + records + Array(outer[open...])
    }

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
            if let (field, message) = state.problem {
                throw CoordinatorError(
                    code: .state, message: "\(statePath): field '\(field)': \(message); nothing was changed")
            }
            return state
        } catch let error as CoordinatorError {
            throw error
        } catch let error as DecodingError {
            let problem = JSONDecodingProblem(
                error, json: (try? Data(contentsOf: URL(fileURLWithPath: statePath))) ?? Data())
            throw CoordinatorError(
                code: .state, message: "\(statePath): \(problem.map { "\($0)" } ?? "\(error)"); nothing was changed")
        } catch {
            throw CoordinatorError(code: .state, message: "\(statePath): \(error)")
        }
    }

    /// Writes `state` atomically (temporary file in the same folder, then rename). Under differential privacy
    /// (`state.privacy` set) it is also durable: the model and optimizer files it names and the new `state.json`
    /// are synced to disk before the rename and the folder after it, so the ledger step of a round whose model
    /// the next round serves survives a power loss (without DP, one sync per round would cost more than a short
    /// round; a kill is covered either way).
    public func save(_ state: PersistedState) throws {
        let durable = state.privacy != nil
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let data = Data(try encoded(state))
            let temporary = directory + "/.state.json.tmp-\(getpid())"
            try data.write(to: URL(fileURLWithPath: temporary))
            if durable {
                for path in [directory + "/" + state.modelFile, directory + "/" + state.optimizerFile, temporary] {
                    try Self.sync(path)
                }
            }
            guard rename(temporary, statePath) == 0 else {
                throw CoordinatorError(code: .state, message: "rename to \(statePath) failed (errno \(errno))")
            }
            if durable { try Self.sync(directory) }
            // Model and optimizer files other than the current ones are leftovers of earlier rounds: one of each
            // kind becomes the spare the next checkpoint overwrites in place, the others are removed.
            var spares: Set<String> = []
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            where Self.isCheckpointFile(name) && name != state.modelFile && name != state.optimizerFile {
                let spare = name.hasPrefix("model-") ? spareModelPath : spareOptimizerPath
                if !spares.contains(spare), rename(directory + "/" + name, spare) == 0 {
                    spares.insert(spare)
                } else {
                    try? FileManager.default.removeItem(atPath: directory + "/" + name)
                }
            }
        } catch let error as CoordinatorError {
            throw error
        } catch {
            throw CoordinatorError(code: .state, message: "\(statePath): \(error)")
        }
    }

    /// Flushes a file's contents, or a folder's entries, to disk.
    static func sync(_ path: String) throws {
        guard let (step, error) = FileSync.sync(path) else { return }
        throw CoordinatorError(
            code: .state,
            message: step == .open
                ? "cannot open \(path) to sync it (errno \(error))" : "cannot sync \(path) to disk (errno \(error))")
    }

    /// Removes model and optimizer files that `state` does not name (all of them when there is no state yet): a
    /// checkpoint that a stop cut short between its files and `state.json`. Its round is run again on restart,
    /// and under differential privacy with fresh noise: the file of the first run is a release the ledger never
    /// charged, so it must not stay readable until the next checkpoint recycles it. For the same reason the
    /// spares go too (a checkpoint writes its model into the spare before renaming it, so a stop in between
    /// leaves the uncommitted model there) and so do the temporary files of a checkpoint or a `state.json` a stop
    /// cut short (`.NAME.tmp-*`). The first checkpoint after a restart then writes a new file instead of
    /// recycling a spare.
    /// Only checkpoint names (`model-NNNNNN.safetensors`, `optimizer-NNNNNN.safetensors`), the spares and those
    /// temporary files are touched, in a folder `claim()` took.
    public func discardUncommitted(_ state: PersistedState?) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names
        where (Self.isCheckpointFile(name) && name != state?.modelFile && name != state?.optimizerFile)
            || Self.isLeftoverOfInterruptedWrite(name)
        {
            do { try FileManager.default.removeItem(atPath: directory + "/" + name) } catch {
                throw CoordinatorError(
                    code: .state,
                    message: "cannot remove the uncommitted checkpoint file \(directory)/\(name): \(error)")
            }
        }
    }

    /// Whether `name` is a spare (`.spare-model.safetensors`, `.spare-optimizer.safetensors`) or the temporary
    /// file of a checkpoint file or of `state.json` (`.NAME.tmp-SUFFIX`).
    static func isLeftoverOfInterruptedWrite(_ name: String) -> Bool {
        if name == ".spare-model.safetensors" || name == ".spare-optimizer.safetensors" { return true }
        guard name.hasPrefix("."), let marker = name.range(of: ".tmp-") else { return false }
        let target = String(name[name.index(after: name.startIndex)..<marker.lowerBound])
        return target == "state.json" || isCheckpointFile(target)
    }

    /// Whether `name` is a checkpoint file's name: `model-` or `optimizer-`, six or more digits, `.safetensors`.
    static func isCheckpointFile(_ name: String) -> Bool {
        for prefix in ["model-", "optimizer-"] where name.hasPrefix(prefix) && name.hasSuffix(".safetensors") {
            let digits = name.dropFirst(prefix.count).dropLast(".safetensors".count)
            return digits.count >= 6 && digits.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return false
    }

    /// The file that marks a folder as a coordinator's state folder (written by `claim()`).
    public static let markerName = ".fedrec-state"

    /// Takes the folder for this process before anything in it is read or removed: creates it when missing,
    /// holds an exclusive `flock` on its `.lock` file for as long as this store (or a copy) lives, so a second
    /// coordinator on the same folder is refused (it would release each round's model twice while the ledger on
    /// disk counts once), and refuses a folder with checkpoint-named files but neither `state.json` nor the
    /// marker: files that are not this folder's checkpoints are never removed or overwritten.
    public mutating func claim() throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw CoordinatorError(code: .state, message: "--state '\(directory)' is a file, not a folder")
        }
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw CoordinatorError(code: .state, message: "cannot create the state folder \(directory): \(error)")
        }
        let lockPath = directory + "/.lock"
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw CoordinatorError(
                code: .state, message: "cannot open \(lockPath) (errno \(errno)): is the folder writable?")
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) == 0 {
            folderLock = FolderLock(descriptor: descriptor)
        } else {
            let error = errno
            close(descriptor)
            // A file system without flock (some network mounts) goes on unlocked, as before the lock existed.
            if error == EWOULDBLOCK {
                throw CoordinatorError(
                    code: .state,
                    message: "the state folder \(directory) is in use by another coordinator; stop it or use another "
                        + "--state")
            }
        }
        let marker = directory + "/" + Self.markerName
        if !fm.fileExists(atPath: statePath), fm.fileExists(atPath: marker) {
            // Before the first commit the folder holds at most round 0's files; once state.json is written it is
            // only ever replaced. Later rounds' checkpoints without it mean it was removed: refuse rather than
            // start over and delete them.
            let later = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter {
                Self.isCheckpointFile($0) && !$0.hasSuffix("-000000.safetensors")
            }.sorted()
            if let last = later.last(where: { $0.hasPrefix("model-") }) ?? later.last {
                throw CoordinatorError(
                    code: .state,
                    message: "\(directory) holds checkpoints of completed rounds (\(last)) but no state.json: it was "
                        + "removed or lost; restore it to resume, or use another --state folder (nothing was removed)")
            }
        }
        guard !fm.fileExists(atPath: statePath), !fm.fileExists(atPath: marker) else { return }
        let foreign = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter(Self.isCheckpointFile).sorted()
        guard foreign.isEmpty else {
            throw CoordinatorError(
                code: .state,
                message: "\(directory) holds checkpoint-named files (\(foreign.prefix(3).joined(separator: ", ")))"
                    + " but no state.json: not a coordinator's state folder; use an empty or new --state folder")
        }
        guard fm.createFile(atPath: marker, contents: Data("fedrec coordinator state folder\n".utf8)) else {
            throw CoordinatorError(code: .state, message: "cannot write \(marker): is the folder writable?")
        }
    }

    /// An obsolete model file kept to be overwritten by the next checkpoint (never read: `state.json` does not
    /// name it, and its content is unspecified).
    public var spareModelPath: String { directory + "/.spare-model.safetensors" }
    /// An obsolete optimizer file kept to be overwritten by the next checkpoint.
    public var spareOptimizerPath: String { directory + "/.spare-optimizer.safetensors" }

    public static func modelFileName(completedRounds: Int) -> String {
        let digits = String(completedRounds)
        return "model-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".safetensors"
    }
}

/// The optimizers' moments beside a checkpoint's model file (`optimizer-NNNNNN.safetensors`): the server
/// optimizer's first and second moments over the flat user tower, and the item tower's Adam moments per
/// parameter, with both step counts in the metadata. Kept out of `state.json`, which stays small.
public enum OptimizerCheckpoint {
    public static func fileName(completedRounds: Int) -> String {
        "optimizer-" + String(format: "%06d", completedRounds) + ".safetensors"
    }

    /// The raw model weights of an averaged run (the model file then holds the average).
    public struct TrainingWeights: Sendable {
        /// Flat values per model-file parameter name.
        public var parameters: [String: [Float]]
        /// Rounds folded into the average.
        public var averageUpdates: Int
    }

    /// Writes the moments, and `training`'s weights as `training.NAME` tensors when the run keeps an average.
    public static func write(
        server: ServerOptimizer, item: Optimizer, training: (model: TwoTowerModel, averageUpdates: Int)? = nil,
        to path: String, recycling spare: String? = nil
    ) throws {
        var tensors: [SafeTensor] = []
        var metadata = ["item_step": "\(item.step)"]
        if let training {
            for (name, shape, value) in training.model.namedParameters {
                tensors.append(SafeTensor(name: "training.\(name)", shape: shape, values: value.storage))
            }
            metadata["average_updates"] = "\(training.averageUpdates)"
        }
        let (first, second) = server.moments
        tensors.append(SafeTensor(name: "server.first", shape: [first.count], values: first))
        tensors.append(SafeTensor(name: "server.second", shape: [second.count], values: second))
        for name in item.momentNames {
            guard let pair = item.moments(of: name) else { continue }
            tensors.append(SafeTensor(name: "item.\(name).first", shape: [pair.first.count], values: pair.first))
            tensors.append(SafeTensor(name: "item.\(name).second", shape: [pair.second.count], values: pair.second))
        }
        try SafeTensors(tensors: tensors, metadata: metadata).write(to: path, recycling: spare)
    }

    /// The server optimizer (configuration and step from `state.json`) and the item optimizer restored from
    /// `path`. Throws `CoordinatorError.state` naming the file when it is unreadable or inconsistent.
    /// `itemParameterCounts`: the item tower's parameter sizes by name; every item moment must be one of them, of
    /// that size (the optimizer's kernels trust the sizes they are given).
    public static func read(
        from path: String, server: ServerOptimizer, item configuration: OptimizerConfiguration, userTowerCount: Int,
        itemParameterCounts: [String: Int]
    ) throws -> (server: ServerOptimizer, item: Optimizer, training: TrainingWeights?) {
        func bad(_ message: String) -> CoordinatorError {
            CoordinatorError(code: .state, message: "\(path): \(message)")
        }
        let file: SafeTensors
        do { file = try SafeTensors.read(from: path, requireFinite: true) } catch { throw bad("\(error)") }
        guard let first = file["server.first"]?.values, let second = file["server.second"]?.values,
            first.count == second.count, first.isEmpty || first.count == userTowerCount
        else { throw bad("server optimizer moments missing or of the wrong length") }
        guard let step = file.metadata["item_step"].flatMap(Int.init), step >= 0 else {
            throw bad("item_step missing from the metadata")
        }
        var moments: [String: (first: [Float], second: [Float])] = [:]
        for tensor in file.tensors where tensor.name.hasPrefix("item.") && tensor.name.hasSuffix(".first") {
            let name = String(tensor.name.dropFirst("item.".count).dropLast(".first".count))
            guard let pair = file["item.\(name).second"], pair.values.count == tensor.values.count else {
                throw bad("item moment '\(name)' has no matching second moment")
            }
            guard let expected = itemParameterCounts[name], expected == tensor.values.count else {
                throw bad("item moment '\(name)' is not of an item-tower parameter of its size")
            }
            moments[name] = (tensor.values, pair.values)
        }
        var training: TrainingWeights? = nil
        if let updates = file.metadata["average_updates"] {
            guard let count = Int(updates), count >= 0 else { throw bad("average_updates is not a count") }
            var parameters: [String: [Float]] = [:]
            for tensor in file.tensors where tensor.name.hasPrefix("training.") {
                parameters[String(tensor.name.dropFirst("training.".count))] = tensor.values
            }
            training = TrainingWeights(parameters: parameters, averageUpdates: count)
        }
        return (
            ServerOptimizer(configuration: server.configuration, step: server.step, first: first, second: second),
            Optimizer(configuration: configuration, step: step, moments: moments), training
        )
    }
}
