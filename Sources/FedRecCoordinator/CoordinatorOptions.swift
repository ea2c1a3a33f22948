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
    public var cohort: CohortSelection = .count(32)
    public var minimumClients: Int = 1
    public var deadline: Duration = .seconds(60)
    public var maximumAttempts: Int = 5
    /// FedAdam as tuned on the validation slices of ml-100k and ml-latest-small (README, "Federated training").
    public var serverOptimizer: ServerOptimizerConfiguration = .fedAdam(
        learningRate: 0.005, beta1: 0.9, beta2: 0.999, tau: 1e-8)
    public var itemOptimizer: OptimizerConfiguration = Self.defaultItemOptimizer
    /// Adam with learning rate 0.005.
    public static let defaultItemOptimizer = OptimizerConfiguration.adam(learningRate: 0.005)
    /// FedSGD clients: one step over all of a client's examples with learning rate 1, i.e. the delta is minus
    /// the client's mean gradient; the server optimizer supplies the step size.
    public var clientTraining: ClientTrainingConfiguration = .init(
        batchSize: ClientTrainingConfiguration.wholeClientBatch, optimizer: .sgd(learningRate: 1))
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
    /// Client-level differential privacy (DP-FedAvg): clients clip their whole update to `clipNorm`, the
    /// coordinator clips again when it sees updates, weights uniformly, adds Gaussian noise to the sum and keeps
    /// an RDP ledger. The cohort is then Poisson-sampled with `samplingRate`. Nil: off.
    public var privacy: DifferentialPrivacyConfiguration? = nil
    /// Secure aggregation (SecAgg+): the coordinator only learns the sum of the cohort's updates. Nil: off.
    public var secureAggregation: SecureAggregationOptions? = nil
    /// Multiplier of the server and item-tower learning rates per round.
    public var learningRateSchedule: LearningRateSchedule = .constant
    /// Decay of the moving average of the global model that is evaluated and saved (the served model); the
    /// raw weights keep training and are checkpointed beside it. Nil: the raw model is served.
    public var averageDecay: Float? = nil
    /// Warm-up of the average's decay rule `min(decay, (1+t)/(warmup+t))` (see `ModelAverage`).
    public var averageWarmup: Float = ModelAverage.standardWarmup
    /// How model downloads and updates carry their values (clients answer in the precision of the download).
    public var wirePrecision: WirePrecision = .float32

    public init(datasetPath: String, keysDirectory: String, allowListPath: String, stateDirectory: String) {
        self.datasetPath = datasetPath
        self.keysDirectory = keysDirectory
        self.allowListPath = allowListPath
        self.stateDirectory = stateDirectory
    }
}

/// Settings of secure aggregation (see the FedRecProtocol documentation, "Secure aggregation").
public struct SecureAggregationOptions: Sendable, Hashable, Codable {
    /// Neighbours per client in the masking graph (nil: SecAgg+'s default of order log2 n; n - 1: full SecAgg).
    public var neighbours: Int?
    /// Shares needed to reconstruct a secret (nil: the default for the neighbourhood size).
    public var threshold: Int?
    /// Each element of a client's update is clipped to [-clipRange, clipRange] before quantisation. The error
    /// of the aggregated mean is about clipRange * maximumWeight / 2^(31 - ceil(log2 n)) / (mean weight) per
    /// element (ml-100k, n = 32, range 10: about 1e-6), so a generous range costs little.
    public var clipRange: Float = 10
    /// Example counts above this are capped when weighting (the weight travels quantised too); nil: the largest
    /// training history in the data set, so no honest client is capped and quantisation keeps full resolution.
    public var maximumWeight: Float? = nil
    /// Time allowed for each stage after the first: advertising keys has the round deadline, and sharing keys,
    /// masked input and unmasking each get this much from the close of the stage before (a secure round can
    /// take up to the round deadline plus three of these).
    public var stageDeadline: Duration = .seconds(30)

    public init() {}
}

/// Why a coordinator stopped or could not start.
public struct CoordinatorError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable { case setup, state, roundFailed, interrupted, privacyBudget }
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
        /// The configured rounds would spend more than the privacy budget (`--target-epsilon`).
        public static let privacyBudget = Code(.privacyBudget)
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
