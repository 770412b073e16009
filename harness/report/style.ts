// The stylesheet of index.html and of its cells/ pages: one text, so one sha256 in both policies.

import { Html, sha256Source } from './markup.js';

const CSS = `
:root{--bg:#fbfbfa;--fg:#1d1f21;--mute:#5f6368;--line:#dadce0;--head:#f1f3f4;--panel:#fff;
--pass:#e6f4ea;--passfg:#0d652d;--fail:#fce8e6;--failfg:#b3261e;--skip:#eceff1;--skipfg:#455a64;--warn:#fef3d6;--warnfg:#8a4b00;--silent:#e8eaf6;--silentfg:#303f9f;
--v0:#e8f0fe;--v1:#fde7d9;--v2:#e6f4ea;--v3:#f3e8fd;--v4:#fff4c2;--v5:#e0f7fa;--link:#1a56c4}
@media (prefers-color-scheme:dark){:root{--bg:#151719;--fg:#e3e3e3;--mute:#9aa0a6;--line:#3c4043;--head:#202124;--panel:#1b1d1f;
--pass:#123821;--passfg:#81c995;--fail:#4a1612;--failfg:#f28b82;--skip:#2a3136;--skipfg:#b0bec5;--warn:#3e2f07;--warnfg:#fdd663;--silent:#1f2440;--silentfg:#9fa8da;
--v0:#1e2a44;--v1:#40281a;--v2:#15321f;--v3:#2e1f40;--v4:#3a3412;--v5:#123438;--link:#8ab4f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{padding:14px 20px 40px;max-width:1800px}
h1{font-size:18px;margin:0 0 2px}h2{font-size:15px;margin:22px 0 8px;border-bottom:1px solid var(--line);padding-bottom:3px}
h3{font-size:14px;margin:0}h4{font-size:12px;margin:12px 0 4px;color:var(--mute);text-transform:uppercase;letter-spacing:.04em}
h4 .mono{text-transform:none;letter-spacing:0}
a{color:var(--link)}
.mono,code,pre,td.v{font-family:ui-monospace,"JetBrains Mono","DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
.meta{color:var(--mute)}
.banner{background:var(--warn);color:var(--warnfg);border:1px solid var(--warnfg);padding:6px 10px;margin:8px 0;font-weight:600}
.bad{background:var(--fail);color:var(--failfg);border:1px solid var(--failfg);padding:6px 10px;margin:8px 0}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
thead th{background:var(--head);font-weight:600}
table.grid th.k{text-align:center;min-width:92px}
table.grid th.k small{display:block;font-weight:400;color:var(--mute)}
table.grid td.sq{padding:0;text-align:center}
table.grid td.sq a{display:block;padding:5px 6px;color:inherit;text-decoration:none;font-weight:600}
table.grid thead th{position:sticky;top:0;z-index:1}
table.grid tbody th{white-space:nowrap}
table.grid td.sq a:hover,table.grid td.sq a:focus,table.grid tr.prog a:hover,table.grid tr.prog a:focus{outline:2px solid var(--link);outline-offset:-2px}
table.grid button.x{all:unset;cursor:default}
body.js table.grid button.x{cursor:pointer}
body.js table.grid button.x::before{content:"▸ ";color:var(--mute)}
body.js table.grid tr.open button.x::before{content:"▾ "}
table.grid button.x:focus-visible{outline:2px solid var(--link)}
table.grid tr.prog th{font-weight:400;padding-left:26px}
table.grid tr.prog td{padding:0 4px;text-align:center;white-space:nowrap}
table.grid tr.prog td a,table.grid tr.prog td span{display:inline-block;min-width:20px;padding:2px 3px;text-decoration:none;font-weight:600}
table.grid tfoot td,table.grid tfoot th{background:var(--head);font-weight:400;text-align:center}
.pass,.m-pass{background:var(--pass);color:var(--passfg)}.fail,.m-fail,.m-error,.m-skip{background:var(--fail);color:var(--failfg)}
.skip,.m-expected-skip{background:var(--skip);color:var(--skipfg)}.warn,.m-not-run{background:var(--warn);color:var(--warnfg)}.silent,.m-silent{background:var(--silent);color:var(--silentfg)}
.g-fail{color:var(--failfg);font-weight:700}
.legend{color:var(--mute);margin:6px 0}
.legend span{display:inline-block;padding:0 6px;margin-right:6px}
table.diff td.v{text-align:right;white-space:nowrap}
table.diff td.cellname{color:var(--mute)}
.v0{background:var(--v0)}.v1{background:var(--v1)}.v2{background:var(--v2)}.v3{background:var(--v3)}.v4{background:var(--v4)}.v5{background:var(--v5)}
ul.findings{margin:4px 0;padding-left:18px}
ul.findings li.violation{color:var(--failfg)}ul.findings li.unexpected{color:var(--warnfg)}
.panel{display:none}
.panel:target,.panel:has(.cell:target){display:block;position:fixed;top:0;right:0;bottom:0;width:min(1180px,82vw);overflow:auto;background:var(--panel);
border-left:1px solid var(--line);box-shadow:-8px 0 24px rgba(0,0,0,.18);padding:12px 18px 40px;z-index:10}
.panel .close{float:right;font-size:18px;text-decoration:none;padding:0 6px}
#drawer{position:fixed;top:0;right:0;bottom:0;width:min(1180px,82vw);display:flex;flex-direction:column;background:var(--panel);
border-left:1px solid var(--line);box-shadow:-8px 0 24px rgba(0,0,0,.18);z-index:10}
#drawer[hidden]{display:none}
#drawer .bar{padding:4px 12px;border-bottom:1px solid var(--line);color:var(--mute)}
#drawer .bar .close{float:right;font-size:18px;text-decoration:none;padding:0 6px}
#drawer iframe{flex:1;border:0;width:100%;background:var(--panel)}
section.kernel{border-top:2px solid var(--line);margin-top:18px}
.cell{border:1px solid var(--line);margin:10px 0;padding:8px 10px}
.cell:target{outline:2px solid var(--link);outline-offset:1px}
.verdict{display:inline-block;padding:0 6px;font-weight:700;margin-right:6px}
table.relos td{white-space:nowrap}table.relos{font-size:12px}
pre{background:var(--head);padding:6px 8px;overflow:auto;max-height:340px;white-space:pre-wrap;margin:4px 0}
.muted{color:var(--mute)}
.ok{color:var(--passfg)}.no{color:var(--failfg);font-weight:700}
body.only-failures tr.allpass{display:none}
.tools{margin:6px 0}
.tools label{color:var(--mute)}
@media print{.panel{display:block!important;position:static!important;width:auto!important;box-shadow:none!important}#drawer{display:none}}
`;

/** The <style> body exactly as written into every page. */
export const STYLE = Html.constant(CSS);
/** Its policy source. */
export const STYLE_SOURCE = sha256Source(CSS);
