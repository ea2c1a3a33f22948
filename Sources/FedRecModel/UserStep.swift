public import FedRecTensor

/// Result of the user-side step.
public struct UserStepResult: Sendable {
    public var loss: Float
    public var gradients: UserTowerGradients
    /// Gradient of the loss w.r.t. the (normalised) item-embedding matrix that was passed in.
    public var itemEmbeddingGradient: Matrix
}

/// Buffers of the user-side step, reused between steps.
public struct UserStepWorkspace: Sendable {
    var cache = UserTowerCache()
    var logits = Matrix(rows: 0, columns: 0)
    var userGradient = Matrix(rows: 0, columns: 0)
    var sampled = SampledSoftmaxCrossEntropy.Workspace()
    public init() {}
}

extension UserTower {
    /// The user-side step (what a federated client runs): given a FIXED item-embedding matrix (`M x d`,
    /// normalised), returns the mean softmax cross-entropy of `batch`, the user-tower gradients and the
    /// gradient w.r.t. `itemEmbeddings`. `candidates` rows index `itemEmbeddings`.
    public func lossAndGradients(
        batch: TrainingBatch, userFeatures: SparseMatrix?, itemEmbeddings: Matrix, candidates: SoftmaxCandidates
    ) -> UserStepResult {
        var gradients = UserTowerGradients(configuration: configuration)
        var itemGradient = Matrix(rows: itemEmbeddings.rows, columns: itemEmbeddings.columns)
        var workspace = UserStepWorkspace()
        let loss = lossAndGradients(
            batch: batch, userFeatures: userFeatures, itemEmbeddings: itemEmbeddings, candidates: candidates,
            gradients: &gradients, itemEmbeddingGradient: &itemGradient, workspace: &workspace)
        return UserStepResult(loss: loss, gradients: gradients, itemEmbeddingGradient: itemGradient)
    }

    /// Allocation-free form: accumulates into `gradients`, overwrites `itemEmbeddingGradient`.
    public func lossAndGradients(
        batch: TrainingBatch, userFeatures: SparseMatrix?, itemEmbeddings: Matrix, candidates: SoftmaxCandidates,
        gradients: inout UserTowerGradients, itemEmbeddingGradient: inout Matrix, workspace: inout UserStepWorkspace
    ) -> Float {
        let loss = forwardLoss(
            batch: batch, userFeatures: userFeatures, itemEmbeddings: itemEmbeddings, candidates: candidates,
            workspace: &workspace)
        backwardLoss(
            batch: batch, itemEmbeddings: itemEmbeddings, candidates: candidates, gradients: &gradients,
            itemEmbeddingGradient: &itemEmbeddingGradient, workspace: &workspace)
        return loss
    }

    /// Forward half: user tower, logits, softmax cross-entropy (leaves `d loss / d logits` in the workspace).
    func forwardLoss(
        batch: TrainingBatch, userFeatures: SparseMatrix?, itemEmbeddings: Matrix, candidates: SoftmaxCandidates,
        workspace: inout UserStepWorkspace
    ) -> Float {
        precondition(itemEmbeddings.columns == configuration.dimension, "item embeddings must have \(configuration.dimension) columns")
        precondition(candidates.positives.count == batch.count, "one positive per example")
        forward(history: batch.history, userFeatures: userFeatures, userRows: batch.userRows, cache: &workspace.cache)
        let scale = 1 / configuration.tau
        if let negatives = candidates.negatives {
            return SampledSoftmaxCrossEntropy.forward(
                users: workspace.cache.embeddings, candidates: itemEmbeddings, positives: candidates.positives,
                negatives: negatives, logCorrection: candidates.logCorrection, scale: scale, workspace: &workspace.sampled)
        }
        ScaledCosineLogits.forward(users: workspace.cache.embeddings, items: itemEmbeddings, scale: scale, into: &workspace.logits)
        return SoftmaxCrossEntropy.lossAndGradientInPlace(&workspace.logits, targets: candidates.positives)
    }

    /// Backward half: logit products and the user tower.
    func backwardLoss(
        batch: TrainingBatch, itemEmbeddings: Matrix, candidates: SoftmaxCandidates,
        gradients: inout UserTowerGradients, itemEmbeddingGradient: inout Matrix, workspace: inout UserStepWorkspace
    ) {
        let scale = 1 / configuration.tau
        if let negatives = candidates.negatives {
            SampledSoftmaxCrossEntropy.backward(
                users: workspace.cache.embeddings, candidates: itemEmbeddings, positives: candidates.positives,
                negatives: negatives, scale: scale, userGradient: &workspace.userGradient,
                candidateGradient: &itemEmbeddingGradient, workspace: &workspace.sampled)
        } else {
            ScaledCosineLogits.backward(
                logitGradient: workspace.logits, users: workspace.cache.embeddings, items: itemEmbeddings, scale: scale,
                userGradient: &workspace.userGradient, itemGradient: &itemEmbeddingGradient)
        }
        backward(embeddingGradient: &workspace.userGradient, history: batch.history, cache: &workspace.cache, into: &gradients)
    }
}
