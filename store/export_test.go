package store

// BulkRows is bulkRows, for the tests that compare the bulk paths with the one-statement ones.
const BulkRows = bulkRows

// StormyRulesQuery is the storm guard's count, for the test that checks it reads its index.
var StormyRulesQuery = stormyRulesQuery
