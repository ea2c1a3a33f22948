public import FedRecData
public import FedRecFederation
public import FedRecTensor

/// Everything a coordinator run is built from (the CLI's options, or a test's).
public struct CoordinatorOptions: Sendable {
    public var datasetPath: String
    /// Folder holding the coordinator's identity `coordinator.key`.
    public var keysDirectory: String
    public var allowListPath: String
    /// Folder of the persisted state (created when missing).
    public var stateDirectory: String
    public var host: String = "127.0.0.1"
    /// 0: any free port.
    public var port: Int = 50_051
    /// Rounds to complete (a resumed run counts the rounds already completed).
    public var rounds: Int = 10
    public var cohort: CohortSelection = .fraction(0.1)
    public var minimumClients: Int = 1
    public var deadline: Duration = .seconds(60)
    public var maximumAttempts: Int = 5
    public var serverOptimizer: ServerOptimizerConfiguration = .fedAvg
    public var itemOptimizer: OptimizerConfiguration = .adam(learningRate: 0.005)
    public var clientTraining: ClientTrainingConfiguration = .init()
    /// Model shape.
    public var dimension: Int = 64
    public var hiddenWidth: Int = 128
    public var tau: Float = 0.1
    public var maxHistory: Int? = nil
    public var useUserFeatures: Bool = true
    public var useItemFeatures: Bool = true
    /// The fold trained on; the per-round Recall@20 is measured on its held-out slice.
    public var fold: Fold = .validation
    /// Evaluate every this many rounds (and after the last); 0: never.
    public var evaluationInterval: Int = 5
    public var seed: UInt64 = 1
    /// Start the first round once this many clients are enrolled (nil: every allow-listed client)...
    public var waitForClients: Int? = nil
    /// ...or once this long has passed with at least `minimumClients` enrolled.
    public var enrolmentGrace: Duration = .seconds(30)
    /// After the last round, keep answering `finished` this long so client processes stop cleanly.
    public var finishLinger: Duration = .seconds(2)
    /// Bounds on every update (nil: none).
    public var maximumDeltaNorm: Double? = nil
    /// Chunk size of streamed payloads.
    public var chunkSize: Int = 1 << 20

    public init(datasetPath: String, keysDirectory: String, allowListPath: String, stateDirectory: String) {
        self.datasetPath = datasetPath
        self.keysDirectory = keysDirectory
        self.allowListPath = allowListPath
        self.stateDirectory = stateDirectory
    }
}

/// Why a coordinator stopped or could not start.
public struct CoordinatorError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable { case setup, state, roundFailed, interrupted }
        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }
        /// Bad data set, keys or allow-list.
        public static let setup = Code(.setup)
        /// The state folder cannot be read or written, or belongs to another run.
        public static let state = Code(.state)
        /// A round failed more often than allowed.
        public static let roundFailed = Code(.roundFailed)
        /// Stopped by a signal before the last round (state saved; resumable).
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
