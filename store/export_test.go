package store

// BulkRows is bulkRows, for the tests that compare the bulk paths with the one-statement ones.
const BulkRows = bulkRows
