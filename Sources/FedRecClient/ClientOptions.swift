/// Which users of the data set a client process hosts (one virtual client each).
public enum UserSelection: Sendable, Hashable {
    /// The first `count` users (data-set order) that have training data.
    case first(Int)
    /// These user ids.
    case ids([String])
    /// Users whose position (data-set order) is `index` modulo `count` (`count` processes share the users).
    case shard(index: Int, count: Int)
}

public struct ClientOptions: Sendable {
    public var coordinatorHost: String = "127.0.0.1"
    public var coordinatorPort: Int = 50_051
    public var datasetPath: String
    /// Folder with one `user-<id>.key` per hosted user and the pinned `coordinator.pub`.
    public var keysDirectory: String
    public var users: UserSelection
    /// How long the coordinator may hold a GetRound call.
    public var pollMilliseconds: Int = 2_000
    /// Give up when the coordinator stays unreachable this long.
    public var connectTimeout: Duration = .seconds(60)
    public var chunkSize: Int = 1 << 20
    /// Most sealed updates of this process's selected clients waiting to be written to the round's upload stream
    /// while the next one trains.
    public var uploadsInFlight: Int = 4
    /// Test hook: on receiving this round, stop answering (simulates a client that hangs or is killed mid-round).
    public var hangInRound: Int? = nil
    /// Test hook: in secure rounds, the process SIGKILLs itself before sending this stage's messages (1...4).
    public var killAtStage: Int? = nil

    public init(datasetPath: String, keysDirectory: String, users: UserSelection) {
        self.datasetPath = datasetPath
        self.keysDirectory = keysDirectory
        self.users = users
    }
}

/// Why a client process stopped or could not start.
public struct ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case setup, enrolmentRefused, coordinatorMismatch, unreachable, interrupted
        }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }
        public static let setup = Code(.setup)
        public static let enrolmentRefused = Code(.enrolmentRefused)
        /// The coordinator's identity is not the pinned one.
        public static let coordinatorMismatch = Code(.coordinatorMismatch)
        public static let unreachable = Code(.unreachable)
        public static let interrupted = Code(.interrupted)
        public var description: String { String(describing: wrapped) }
    }
    public var code: Code
    public var message: String
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code): \(message)" }
}
