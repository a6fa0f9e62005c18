// Package rules loads rule files (DESIGN.md §4 "Rule files") and evaluates them against alerts.
//
// The contract:
//
//   - Everything is compiled once, at load: each rule's `when` with expr.AsBool, and every
//     {{ expr }} segment of every param string, all against the typed environment Env
//     (expr.Env(Env{})), so a typo such as alert.lables or a `when` that is not a bool is a load
//     error. Match and Render only run compiled programs; they never compile. The one exception
//     is CompileDeferred (chained steps, below).
//   - Chained steps (steps.go): a step may have an `id`; a later step of the same list reads its
//     result as {{ steps.<id>.result.<field> }}. At load, the id must name an earlier step of the
//     same list, the field must be one its handler declares (StepCatalog), the param must not
//     name the action's target, and `when` may not use steps. Action.Refs and Action.Deferred say
//     what a step reads and which of its params wait for it; Render reads the results from
//     Env.WithSteps, and a missing one is an error (errors.Is ErrMissing, *StepError). The engine
//     stores a chained step's deferred params as written when it plans the step and compiles
//     them again with CompileDeferred when it runs it, so a reload in between changes nothing.
//   - The environment is alert.name, alert.source, alert.status, alert.labels, alert.annotations,
//     alert.value (float64, NaN when absent), alert.startsAt, alert.endsAt, alert.activeFor,
//     alert.fingerprint and alert.drill (a non-empty responder_drill label), plus now() (the clock given to NewEnv), toJSON(x) (compact JSON),
//     firing(name[, labels]) (the FiringSet snapshot given to NewEnv; no I/O) and the template
//     functions of Prometheus's alerting templates: humanize, humanizePercentage,
//     humanizeDuration and printf (funcs.go). Set.UsesFiring says whether any rule calls firing().
//   - Missing labels: in `when`, alert.labels.x of a missing label is "" (so a comparison is just
//     false). In a template it is an error (errors.Is(err, ErrMissing)), which the engine turns into
//     a bad_param failure; write alert.labels?.x for "" or alert.labels.x ?? "default" for a
//     default. The same holds for annotations. This is done by rewriting the expression's AST at
//     compile time (see keyPatcher), not by inspecting strings.
//   - A string param that is exactly one {{ expr }} keeps the value's type when it is a bool,
//     number, list or map; any other result, and every mixed string, is text.
//   - Rule indexing: Set.Candidates returns, for one alert, the rules that may match it, in the
//     set's order. A rule whose `when` requires, in its leading conjuncts that cannot fail,
//     alert.name, a label (alert.labels.x), an annotation, alert.source, alert.status or
//     alert.fingerprint to equal a constant (==, in [...] or an || of them) is filed under those
//     values, read from the compiled AST; the others are residual and always candidates. So
//     evaluating the candidates gives the same matches and the same errors as evaluating every
//     rule (a property test checks it), and 1,000 rules that mostly pin alert.name or a label
//     cost about what the residual ones do (BenchmarkMatch1000). See index.go.
//   - Load errors name file:line (from the YAML nodes) and all of them are reported, joined; a rule
//     with an error is not loaded. Unknown keys are errors. Actions are checked against a Catalog
//     (the handler registry, passed in by app: this package does not import handlers).
package rules
