// Reports: the cross-kernel diff of one run, baseline comparison, shard merging and the four
// report files (report.json, junit.xml, summary.md, index.html). What the orchestrator calls.
export { diffKernels, formatKernelDiff, formatRow, type KernelDiff, type Finding, type ValueRow, type CellGroup } from './diff.js';
export { compareRuns, formatComparison, type RunComparison, type CompareOptions } from './compare.js';
export { mergeReports, readRunReport, validateRunReport } from './merge.js';
export { writeReports, renderReports, nodeIO, type ReportIO } from './write.js';
