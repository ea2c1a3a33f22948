import FedRecData
import FedRecFederation
import FedRecModel
import FedRecTensor
import Foundation
import Testing

@Suite struct ClientTrainerTests {
    let data = SyntheticData()

    /// One epoch, one batch, SGD: the delta is `-lr * gradient` and the item gradient is the user-side step's,
    /// both at the global weights.
    @Test func oneFullBatchStepMatchesTheUserSideStep() {
        let model = data.model
        let items = model.itemEmbeddings(itemFeatures: data.itemFeatures)
        let user = data.users[1]
        var trainer = ClientTrainer(
            configuration: .init(localEpochs: 1, batchSize: 64, optimizer: .sgd(learningRate: 0.3)))
        let update = trainer.train(
            globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 1)
        var batch = TrainingBatch(form: .leaveOneOut)
        let group = batch.appendUser(known: user.known)
        for p in user.known.indices { batch.appendExample(group: group, position: p, userRow: user.userIndex) }
        let step = model.userTower.lossAndGradients(
            batch: batch, userFeatures: nil, itemEmbeddings: items, candidates: .full(targets: batch.targets))
        #expect(update.exampleCount == user.known.count)
        #expect(isClose(Double(update.meanLoss), Double(step.loss), relative: 1e-5))
        let layout = ParameterLayout.userTower(data.configuration)
        let named = step.gradients.named
        for entry in layout.entries {
            let g = named[entry.name]!.storage
            for j in 0..<entry.count {
                #expect(
                    isClose(
                        Double(update.userTowerDelta[entry.offset + j]), -0.3 * Double(g[j]), relative: 1e-4,
                        absolute: 1e-7))
            }
        }
        let itemGradient = update.itemEmbeddingGradient.dense.storage
        for i in itemGradient.indices {
            #expect(
                isClose(
                    Double(itemGradient[i]), Double(step.itemEmbeddingGradient.storage[i]), relative: 1e-4,
                    absolute: 1e-7))
        }
    }

    @Test func localTrainingLowersTheLossAndFedProxShrinksTheDelta() {
        let model = data.model
        let items = model.itemEmbeddings(itemFeatures: data.itemFeatures)
        let user = data.users[2]
        var trainer = ClientTrainer(
            configuration: .init(localEpochs: 5, batchSize: 2, optimizer: .sgd(learningRate: 0.5)))
        let update = trainer.train(
            globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 3)
        var trained = model.userTower.flattened()
        FlatVector.add(update.userTowerDelta, to: &trained)
        var after = ClientTrainer(
            configuration: .init(localEpochs: 1, batchSize: 64, optimizer: .sgd(learningRate: 1e-9)))
        let before = after.train(
            globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 1)
        let later = after.train(
            globalUserTower: UserTower(configuration: data.configuration, flattened: trained), itemEmbeddings: items,
            user: user,
            userFeatures: nil, seed: 1)
        #expect(later.meanLoss < before.meanLoss)

        var prox = ClientTrainer(
            configuration: .init(localEpochs: 5, batchSize: 2, optimizer: .sgd(learningRate: 0.5), proximalMu: 2))
        let proximal = prox.train(
            globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 3)
        #expect(FlatVector.l2Norm(proximal.userTowerDelta) < FlatVector.l2Norm(update.userTowerDelta))
        // Same seed, same result (the trainer's reused buffers carry nothing over).
        #expect(
            trainer.train(
                globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 3)
                == update)
        var adam = ClientTrainer(
            configuration: .init(localEpochs: 2, batchSize: 4, optimizer: .adam(learningRate: 0.01)))
        let adamUpdate = adam.train(
            globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 3)
        #expect(FlatVector.isFinite(adamUpdate.userTowerDelta) && FlatVector.l2Norm(adamUpdate.userTowerDelta) > 0)
    }
}

extension ClientTrainerTests {
    /// FedProx pulls every moved row of the history table on every step, as the dense term `mu/2 ||w - w0||^2`
    /// does. With batches of n - 1 and 1 examples the last step's one example leaves its target's row out of its
    /// history, so that row's data gradient is zero there: its delta must still shrink by `1 - lr mu`, and every
    /// other known row must change too.
    @Test func proximalTermPullsEveryMovedHistoryRowOnEveryStep() throws {
        let model = data.model
        let items = model.itemEmbeddings(itemFeatures: data.itemFeatures)
        let user = try #require(data.users.first { $0.known.count >= 4 })
        let n = user.known.count
        let lr: Float = 0.5
        let mu: Float = 0.5
        func historyDelta(steps: Int) -> Matrix {
            var trainer = ClientTrainer(
                configuration: .init(
                    localEpochs: 1, batchSize: n - 1, optimizer: .sgd(learningRate: lr), proximalMu: mu,
                    maximumSteps: steps))
            let update = trainer.train(
                globalUserTower: model.userTower, itemEmbeddings: items, user: user, userFeatures: nil, seed: 5)
            return UserTower(configuration: data.configuration, flattened: update.userTowerDelta).historyEmbedding
        }
        let first = historyDelta(steps: 1)
        let both = historyDelta(steps: 2)
        var pulledOnly = 0
        for row in user.known.map(Int.init) {
            let before = (0..<first.columns).map { first[row, $0] }
            let after = (0..<both.columns).map { both[row, $0] }
            #expect(before.contains { $0 != 0 }, "row \(row) moved in the first step")
            #expect(after != before, "row \(row) kept its first-step delta through the second step")
            let shrunk = zip(before, after).allSatisfy { abs($1 - (1 - lr * mu) * $0) <= 1e-6 * max(1, abs($0)) }
            if shrunk { pulledOnly += 1 }
        }
        #expect(pulledOnly == 1, "exactly the last example's target row moves by the pull alone")
    }
}

extension ClientTrainerTests {
    /// A client does not send an update whose delta, item-embedding gradient or loss is not finite.
    @Test func updatesFromDivergedTrainingAreNotFinite() {
        let model = data.model
        let items = model.itemEmbeddings(itemFeatures: data.itemFeatures)
        var trainer = ClientTrainer(configuration: .init(localEpochs: 1, batchSize: 4, optimizer: .sgd(learningRate: 0.5)))
        let update = trainer.train(
            globalUserTower: model.userTower, itemEmbeddings: items, user: data.users[0], userFeatures: nil, seed: 1)
        #expect(update.isFinite)
        var delta = update
        delta.userTowerDelta[3] = .nan
        var gradient = update
        if case .dense(var matrix) = gradient.itemEmbeddingGradient {
            matrix.storage[5] = .infinity
            gradient.itemEmbeddingGradient = .dense(matrix)
        }
        var loss = update
        loss.meanLoss = .infinity
        #expect(!delta.isFinite && !gradient.isFinite && !loss.isFinite)
    }
}

/// Coordinator state machine + virtual clients in process, no network.
@Suite struct InProcessFederationTests {
    let data = SyntheticData()

    /// Runs `rounds` rounds through the state machine with a manual clock; checks each aggregate against the
    /// plain weighted average of the same updates. Returns the mean client loss per round.
    func run(server serverConfiguration: ServerOptimizerConfiguration, rounds: Int) -> [Double] {
        let clock = ManualClock()
        var server = FederatedServer(
            model: data.model, itemFeatures: data.itemFeatures, serverOptimizer: serverConfiguration,
            itemOptimizer: .adam(learningRate: 0.01))
        var machine = RoundStateMachine<ManualClock.Instant>(
            configuration: .init(minimumClients: 3, roundTimeout: .seconds(30), validator: data.validator))
        let sampler = ClientSampler(selection: .count(6), seed: 8)
        var trainer = ClientTrainer(
            configuration: .init(localEpochs: 2, batchSize: 4, optimizer: .sgd(learningRate: 0.5)))
        var losses: [Double] = []
        for round in 0..<rounds {
            let cohort = sampler.cohort(round: round, from: data.ids)
            guard case .startRound(round, 0, _, let deadline) = machine.openRound(cohort: cohort, now: clock.now) else {
                Issue.record("round \(round) did not open")
                return losses
            }
            var sent: [(ClientID, ClientUpdate)] = []
            for (k, id) in cohort.enumerated() {
                if k == 0 {
                    _ = machine.clientDropped(id)  // one dropout per round
                    continue
                }
                let user = data.users[data.ids.firstIndex(of: id)!]
                let update = trainer.train(
                    globalUserTower: server.userTower, itemEmbeddings: server.itemEmbeddings, user: user,
                    userFeatures: nil,
                    seed: UInt64(round * 100 + k))
                if k == cohort.count - 1 { break }  // the last member is a straggler
                sent.append((id, update))
                guard case .accepted = machine.receiveUpdate(update, from: id, round: round) else {
                    Issue.record("update of \(id) not accepted")
                    return losses
                }
            }
            clock.advance(by: clock.now.duration(to: deadline))
            guard case .closeRound(let result) = machine.deadlineReached(now: clock.now) else {
                Issue.record("round \(round) did not close")
                return losses
            }
            #expect(result.stragglers == [cohort.last!] && result.droppedOut == [cohort.first!])
            // The aggregate equals the weighted average computed directly.
            let total = sent.reduce(0) { $0 + $1.1.exampleCount }
            #expect(result.aggregate.exampleCount == total)
            for i in stride(from: 0, to: result.aggregate.meanDelta.count, by: 37) {
                let direct =
                    sent.reduce(0.0) { $0 + Double($1.1.exampleCount) * Double($1.1.userTowerDelta[i]) } / Double(total)
                #expect(isClose(Double(result.aggregate.meanDelta[i]), direct, relative: 1e-4, absolute: 1e-7))
            }
            for i in stride(from: 0, to: result.aggregate.meanItemEmbeddingGradient.count, by: 11) {
                let direct =
                    sent.reduce(0.0) {
                        $0 + Double($1.1.exampleCount) * Double($1.1.itemEmbeddingGradient.dense.storage[i])
                    } / Double(total)
                #expect(
                    isClose(
                        Double(result.aggregate.meanItemEmbeddingGradient.storage[i]), direct, relative: 1e-4,
                        absolute: 1e-7))
            }
            server.apply(result.aggregate)
            losses.append(result.aggregate.meanLoss)
        }
        #expect(server.appliedRounds == rounds)
        return losses
    }

    @Test(arguments: [
        ServerOptimizerConfiguration.fedAvg(learningRate: 1),
        .fedAdam(learningRate: 0.05, tau: 1e-2),
        .fedYogi(learningRate: 0.05, tau: 1e-2),
    ])
    func trainingLossGoesDown(server: ServerOptimizerConfiguration) {
        let losses = run(server: server, rounds: 12)
        #expect(losses.count == 12 && losses.allSatisfy(\.isFinite))
        let first = losses.prefix(3).reduce(0, +) / 3
        let last = losses.suffix(3).reduce(0, +) / 3
        #expect(last < first, "\(losses)")
    }
}

@Suite struct FederatedSimulationTests {
    let data = SyntheticData()

    func configuration(_ server: ServerOptimizerConfiguration, cohort: CohortSelection = .count(6))
        -> FederatedSimulationConfiguration
    {
        FederatedSimulationConfiguration(
            model: data.configuration, client: .init(localEpochs: 2, batchSize: 4, optimizer: .sgd(learningRate: 0.5)),
            server: server, itemOptimizer: .adam(learningRate: 0.01), cohort: cohort, minimumClients: 1,
            evaluationInterval: 5, seed: 21)
    }

    /// Full-batch loss of every user at the current model (independent of the clients' local training).
    func globalLoss(_ model: TwoTowerModel) -> Double {
        var batch = TrainingBatch(form: .leaveOneOut)
        for user in data.users {
            let g = batch.appendUser(known: user.known)
            for p in user.known.indices { batch.appendExample(group: g, position: p, userRow: user.userIndex) }
        }
        let items = model.itemEmbeddings(itemFeatures: data.itemFeatures)
        return Double(
            model.userTower.lossAndGradients(
                batch: batch, userFeatures: nil, itemEmbeddings: items, candidates: .full(targets: batch.targets)
            ).loss)
    }

    @Test func deterministicEvaluatesOnScheduleAndLearns() {
        var seen: [SimulatedRound] = []
        let config = configuration(.fedAdam(learningRate: 0.05, tau: 1e-2))
        let a = FederatedSimulation.run(
            dataset: data.dataset, configuration: config, rounds: 12, evaluate: { -globalLoss($0) },
            progress: { seen.append($0) })
        let b = FederatedSimulation.run(dataset: data.dataset, configuration: config, rounds: 12)
        #expect(a.model == b.model)
        #expect(seen.map(\.round) == Array(0..<12) && seen.allSatisfy { $0.participants == 6 && $0.rejected.isEmpty })
        #expect(seen.map { $0.evaluation != nil } == (1...12).map { $0 % 5 == 0 || $0 == 12 })
        #expect(globalLoss(a.model) < globalLoss(data.model))
    }

    /// Adaptive clipping: from a clip norm far above (below) every update norm, every client reports 1 (0), so
    /// each round multiplies the norm by exp(-0.2 (b - 0.5)) with b = 1 (0) plus the count noise over the
    /// cohort: about exp(-0.1) (exp(0.1)). The reported norm is the one the round's clients clipped to.
    @Test(arguments: [1000.0, 1e-6])
    func adaptiveClippingMovesTheClipNormTowardsTheUpdateNorms(initial: Double) {
        // A negligible server step keeps the noisy model, and hence the update norms, where they are.
        var config = configuration(.fedAvg(learningRate: 1e-6), cohort: .poisson(rate: 1))
        let population = data.dataset.users.count
        var privacy = DifferentialPrivacyConfiguration(
            clipNorm: initial, noiseMultiplier: 0.5, samplingRate: 1, numberOfUsers: population)
        privacy.adaptiveClipping = .init(targetQuantile: 0.5, learningRate: 0.2, countNoiseStandardDeviation: 0.3)
        #expect(throws: Never.self) { try privacy.validate() }
        config.privacy = privacy
        let result = FederatedSimulation.run(dataset: data.dataset, configuration: config, rounds: 8)
        let norms = result.rounds.compactMap(\.clipNorm)
        #expect(norms.count == 8 && norms.first == initial)
        #expect(result.rounds.allSatisfy { $0.participants == population })
        // Count noise 0.3 over `population` clients moves the exponent by 0.2 * 0.3 * 5 / population at most
        // (five standard deviations).
        let spread = 0.3 / Double(population)
        let expected = initial > 1 ? -0.1 : 0.1
        for (before, after) in zip(norms, norms.dropFirst()) {
            #expect(abs(log(after / before) - expected) <= spread, "\(norms)")
        }
    }

    @Test func poissonCohortsRetryEmptyDraws() {
        let result = FederatedSimulation.run(
            dataset: data.dataset, configuration: configuration(.fedAvg, cohort: .poisson(rate: 0.15)), rounds: 6)
        #expect(result.rounds.count == 6 && result.server.appliedRounds == 6)
        #expect(Set(result.rounds.map(\.participants)).count > 1 || result.rounds.allSatisfy { $0.participants > 0 })
    }
}

@Suite struct RoundScheduleTests {
    @Test func cosineWarmsUpDecaysToItsFloorAndNeverLeavesIt() {
        let schedule = LearningRateSchedule.cosine(rounds: 20, warmup: 4, floor: 0.1)
        schedule.validate()
        #expect(schedule.multiplier(round: 0) == 0.2)
        #expect(abs(schedule.multiplier(round: 3) - 0.8) < 1e-6)
        #expect(schedule.multiplier(round: 4) == 1)
        #expect(abs(schedule.multiplier(round: 19) - 0.1) < 1e-6)
        #expect(abs(schedule.multiplier(round: 50) - 0.1) < 1e-6)
        let decaying = (4..<20).map { schedule.multiplier(round: $0) }
        #expect(zip(decaying, decaying.dropFirst()).allSatisfy { $0 >= $1 })
        #expect((0..<60).allSatisfy { let m = schedule.multiplier(round: $0); return m > 0 && m <= 1 && m.isFinite })
        #expect(LearningRateSchedule.constant.multiplier(round: 7) == 1)
    }

    @Test func serverStepScalesItsLearningRate() {
        var a = ServerOptimizer(configuration: .fedAdam(learningRate: 0.02, beta1: 0.9, beta2: 0.99, tau: 1e-3))
        var b = ServerOptimizer(configuration: .fedAdam(learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3))
        var x: [Float] = [1, -1, 0.5], y = x
        for delta: [Float] in [[0.1, -0.2, 0.3], [0.05, 0.1, -0.1]] {
            a.apply(delta: delta, to: &x, learningRateScale: 0.5)
            b.apply(delta: delta, to: &y)
        }
        for (p, q) in zip(x, y) { #expect(abs(p - q) < 1e-7) }
    }

    @Test func biasCorrectedServerAdamOnMinusTheGradientIsCentralAdam() {
        // With delta = -gradient (a FedSGD round at client lr 1), the server's bias-corrected Adam takes exactly
        // the step central Adam takes on that gradient.
        var rng = SplitMix64(seed: 17)
        let start = (0..<12).map { _ in rng.nextGaussian() }
        var server = ServerOptimizer(configuration: .adam(learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8))
        var central = Optimizer(configuration: .adam(learningRate: 0.01))
        var x = start
        var p = Matrix(rows: 3, columns: 4, storage: start)
        for _ in 0..<5 {
            let g = (0..<12).map { _ in rng.nextGaussian() }
            server.apply(delta: g.map { -$0 }, to: &x)
            central.beginStep()
            central.update("p", parameter: &p, gradient: Matrix(rows: 3, columns: 4, storage: g))
        }
        for (a, b) in zip(x, p.storage) { #expect(abs(a - b) < 1e-5) }
        #expect(x != start)
    }

    @Test func averageFollowsItsDecayAndIsExactForAConstantModel() {
        let data = SyntheticData()
        let first = data.model
        var moved = first
        moved.userTower = UserTower(
            configuration: first.configuration, flattened: first.userTower.flattened().map { $0 + 1 })
        var average = ModelAverage(model: first, decay: 0.5)
        // Update 1: decay min(0.5, 2/11) = 2/11, so the average is 2/11 first + 9/11 moved.
        average.update(with: moved)
        let expected = zip(first.userTower.flattened(), moved.userTower.flattened()).map { 2 / 11 * $0 + 9 / 11 * $1 }
        for (p, q) in zip(average.model.userTower.flattened(), expected) { #expect(abs(p - q) < 1e-5) }
        // Equal inputs average to themselves (up to rounding of d x + (1 - d) x).
        for (p, q) in zip(average.model.itemTower.idEmbedding.storage, first.itemTower.idEmbedding.storage) {
            #expect(abs(p - q) <= 1e-6 * max(1, abs(q)))
        }
        #expect(average.updates == 1)
        // A model that stops moving pulls the average onto it.
        for _ in 0..<200 { average.update(with: moved) }
        for (p, q) in zip(average.model.userTower.flattened(), moved.userTower.flattened()) { #expect(abs(p - q) < 1e-4) }
    }

    @Test func warmupTwoAveragesUniformlyUntilTheDecayCapsIt() {
        let data = SyntheticData()
        let base = data.model
        func shifted(_ by: Float) -> TwoTowerModel {
            var m = base
            m.userTower = UserTower(configuration: base.configuration, flattened: base.userTower.flattened().map { $0 + by })
            return m
        }
        // Decay (1+t)/(2+t) = 1 - 1/(t+2): the running mean of every update and the start, the start counting
        // twice (the cap 0.9 binds from t = 8 on).
        var average = ModelAverage(model: shifted(0), decay: 0.9, warmup: 2)
        for k in 1...5 { average.update(with: shifted(Float(k))) }
        let expected = base.userTower.flattened().map { $0 + 15 / 7 }  // (0 + 0 + 1 + ... + 5) / 7
        for (p, q) in zip(average.model.userTower.flattened(), expected) { #expect(abs(p - q) < 1e-4) }
        #expect(average.warmup == 2)
    }

    @Test func simulationEvaluatesTheAverageAndAScheduledRunDiffersFromAConstantOne() {
        let data = SyntheticData()
        var config = FederatedSimulationConfiguration(
            model: data.configuration, client: .init(localEpochs: 1, batchSize: 4, optimizer: .sgd(learningRate: 0.5)),
            server: .fedAdam(learningRate: 0.05, tau: 1e-2), itemOptimizer: .adam(learningRate: 0.01),
            cohort: .count(6), evaluationInterval: 4, seed: 5)
        let plain = FederatedSimulation.run(dataset: data.dataset, configuration: config, rounds: 8)
        config.averageDecay = 0.9
        var evaluated: [TwoTowerModel] = []
        let averaged = FederatedSimulation.run(
            dataset: data.dataset, configuration: config, rounds: 8, evaluate: { evaluated.append($0); return 0 })
        // The raw weights are untouched by averaging; the result and the evaluations are the average.
        #expect(averaged.server.model == plain.model)
        #expect(averaged.model != plain.model && averaged.model == averaged.average?.model)
        #expect(evaluated.last == averaged.model)
        config.averageDecay = nil
        config.learningRateSchedule = .cosine(rounds: 8, warmup: 2, floor: 0.1)
        let scheduled = FederatedSimulation.run(dataset: data.dataset, configuration: config, rounds: 8)
        #expect(scheduled.model != plain.model)
    }
}
