// The loader runtime's public surface (guest side): kernel handles, attach, readers, probes,
// guest facts. The object loader passes relocated instruction bytes, map definitions and BTF
// bytes in; nothing here parses ELF or BTF.

export { BpfMap, ensureBpffs, isBpffs, u32, u64, readU32, readU64, type MapInfo, type MapOptions } from './map.js';
export { Program, type ProgramInfo, type ProgramOptions } from './program.js';
export { Link, attachRawTracepoint, attachTracing, attachTracepoint, attachKprobe, kprobePmu, tracefs, tracepointId, type KprobeOptions } from './link.js';
export { RingBufReader } from './ringbuf.js';
export { PerfBufReader, type PerfRecord, type PerfReaderOptions } from './perfbuf.js';
export { btfLoad, objName, vmlinuxBtf, VerifierError, type ProgLoadAttr, type MapCreateAttr, type TestRunOptions, type TestRunResult } from './bpf.js';
export { SyscallError, errnoName, errnoNumber, close, removeMemlockLimit, finitModule, ioctlBuffer, pageSize, powerOff } from './sys.js';
export { openFds, openFdCount, type OpenFd } from './fds.js';
export {
  probeAll,
  probeBtfKind,
  probeMapType,
  probeProgType,
  probeHelper,
  probeMmapableArray,
  probeLdimm64FullRangeOffsets,
  probeBpfLink,
  probeUprobeMultiLink,
  probeKprobePmu,
  probeSyscallWrapper,
  probeBpfCookie,
  kconfigSpecial,
  kconfigSpecials,
  KCONFIG_SPECIAL_NAMES,
  featureState,
  requireFeature,
  FeatureMissingError,
  type FeatureState,
} from './probe.js';
export {
  readKernelConfig,
  unameRelease,
  unameVersion,
  KernelConfig,
  parseKernelConfig,
  linuxKernelVersion,
  kernelVersion,
  kernelVersionFromRelease,
  kallsymsLookup,
  parseKallsyms,
  possibleCpus,
  possibleCpuCount,
  parseCpuList,
  onlineCpus,
  syscallPrefix,
  kconfigSpecialsFromBtf,
  type KconfigValue,
  type Ksym,
} from './facts.js';
export { MapType, ProgType, AttachType, MapFlag, UpdateFlag, Helper } from './consts.js';
export { runtimeSelfTest, type SelfTestResult, type SelfTestOptions } from './selftest.js';
