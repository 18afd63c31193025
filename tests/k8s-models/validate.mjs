// Validates Kubernetes manifests against the models of the projects that own their
// kinds: Argo CD, Flux, prometheus-operator and Strimzi (the @kubernetes-models packages,
// generated from each project's CRDs / API types) and Kubernetes itself.
//
//   node validate.mjs FILE...
//
// Every YAML document is validated with its model's validate() (the JSON schema of the
// CRD), and its keys are checked against the model's TypeScript interface: a CRD schema
// lets unknown fields through (the API server drops them), the interface does not, so a
// misspelt key fails here. One line per document:
//   ok FILE#N apiVersion/kind name
//   skip FILE#N apiVersion/kind name: <why>      (a kind no package models, listed below)
//   FILE:LINE:COL: apiVersion/kind name: $.json.path: <message>     (one per error)
// Exit status: 0 all valid, 1 a document is invalid or has no model, 2 usage, 3 a crash.
// tests/test_deploy_models.py runs it over deploy/ and generated/.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments } from "yaml";

// apiVersion -> the package folder holding one module per kind (imported when used)
const MODELS = {
  "v1": "kubernetes-models/v1",
  "argoproj.io/v1alpha1": "@kubernetes-models/argo-cd/argoproj.io/v1alpha1",
  "kustomize.toolkit.fluxcd.io/v1": "@kubernetes-models/flux-cd/kustomize.toolkit.fluxcd.io/v1",
  "source.toolkit.fluxcd.io/v1": "@kubernetes-models/flux-cd/source.toolkit.fluxcd.io/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
  "kafka.strimzi.io/v1": "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1",
  "rbac.authorization.k8s.io/v1": "kubernetes-models/rbac.authorization.k8s.io/v1",
};
// kustomize's own file is no Kubernetes resource and no package models it
const UNMODELLED = {
  "kustomize.config.k8s.io/v1beta1/Kustomization": "kustomize's build file, no published model",
  "kustomize.config.k8s.io/v1alpha1/Component": "kustomize's build file, no published model",
};

function instanceKeys(instancePath) {
  return instancePath.split("/").slice(1).map((k) => k.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function jsonPath(keys) {
  return "$" + keys.map((k) => (/^\d+$/.test(k) ? `[${k}]` : /^[A-Za-z_][\w-]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)).join("");
}

// line:col of the deepest key of `keys` the document has (a missing key: its parent's)
function position(doc, keys, lines) {
  const at = (node) => {
    const { line, col } = lines.linePos(node.range[0]);
    return `${line}:${col}`;
  };
  for (let n = keys.length; n > 0; n--) {
    const parent = n === 1 ? doc.contents : doc.getIn(keys.slice(0, n - 1).map((k) => (/^\d+$/.test(k) ? Number(k) : k)), true);
    const last = keys[n - 1];
    if (isMap(parent)) {
      const pair = parent.items.find((item) => isScalar(item.key) && String(item.key.value) === last);
      if (pair?.key?.range) return at(pair.key);
    } else if (isSeq(parent) && parent.items[Number(last)]?.range) {
      return at(parent.items[Number(last)]);
    }
  }
  return doc.contents?.range ? at(doc.contents) : "1:1";
}

function describe(err) {
  const params = err.params || {};
  if (err.keyword === "enum") return `${err.message}: ${params.allowedValues.map((v) => JSON.stringify(v)).join(", ")}`;
  return err.message || err.keyword;
}

async function model(apiVersion, kind) {
  const folder = MODELS[apiVersion];
  if (!folder || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) return undefined;
  try {
    return (await import(`${folder}/${kind}`))[kind];
  } catch (e) {
    if (e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED" || e.code === "ERR_MODULE_NOT_FOUND") return undefined;
    throw e;
  }
}

// TypeScript's "Object literal may only specify known properties" (and "... Did you mean")
const UNKNOWN_PROPERTY = new Set([2353, 2561]);
const HERE = dirname(fileURLToPath(import.meta.url));

// $.json.path of the object-literal property at `pos` in the checked source
function propertyPath(source, pos) {
  let node = source;
  for (;;) {
    const inner = node.getChildren(source).find((c) => c.getStart(source) <= pos && pos < c.getEnd());
    if (!inner) break;
    node = inner;
  }
  const keys = [];
  for (let n = node; n && !ts.isVariableDeclaration(n); n = n.parent) {
    if (ts.isPropertyAssignment(n)) keys.unshift(n.name.text);
    else if (n.parent && ts.isArrayLiteralExpression(n.parent)) keys.unshift(String(n.parent.elements.indexOf(n)));
  }
  return keys;
}

// every document as `const dN: I<Kind> = <its JSON>`, type-checked in one program;
// returns the unknown-property errors of each document
function unknownFields(data) {
  const file = join(HERE, "__manifests__.ts");
  const text = data.map((d, i) => `import type { I${d.kind} as T${i} } from "${MODELS[d.apiVersion]}/${d.kind}";`)
    .concat(data.map((d, i) => `export const d${i}: T${i} = ${JSON.stringify(d)};`)).join("\n");
  const options = { noEmit: true, strict: true, skipLibCheck: true, types: [], target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, ...rest) => (name === file ? ts.createSourceFile(name, text, ts.ScriptTarget.ES2022, true) : getSourceFile(name, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? text : readFile(name));
  const program = ts.createProgram([file], options, host);
  const source = program.getSourceFile(file);
  const found = data.map(() => []);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
    // trouble in the models themselves, or an import that does not resolve (which would
    // leave its document unchecked): no verdict, a crash
    if (d.file !== source) throw new Error(`type check: ${message}`);
    const index = source.getLineAndCharacterOfPosition(d.start).line - data.length;
    if (index < 0) throw new Error(`type check: ${message}`);
    // type errors are the JSON schema's to report; only unknown keys are news here
    if (UNKNOWN_PROPERTY.has(d.code)) {
      const suggestion = /Did you mean to write '([^']+)'\?/.exec(message)?.[1];
      found[index].push({ keys: propertyPath(source, d.start),
        message: "unknown field, not in the model" + (suggestion ? `; did you mean ${suggestion}?` : "") });
    }
  }
  return found;
}

// every document of `file`: {where, file, doc, lines, data, id, model}
async function documents(file) {
  const lines = new LineCounter();
  const found = [];
  for (const [index, doc] of parseAllDocuments(readFileSync(file, "utf8"), { lineCounter: lines }).entries()) {
    const entry = { where: `${file}#${index}`, file, doc, lines, errors: [] };
    if (doc.errors.length) {
      for (const e of doc.errors) {
        const at = e.linePos?.[0] ?? { line: 1, col: 1 };
        entry.errors.push(`${file}:${at.line}:${at.col}: YAML: ${e.message}`);
      }
      found.push(entry);
      continue;
    }
    entry.data = doc.toJS();
    if (entry.data === null || entry.data === undefined) continue;
    entry.id = `${entry.data.apiVersion}/${entry.data.kind} ${entry.data.metadata?.name ?? "(unnamed)"}`;
    entry.model = await model(entry.data.apiVersion, entry.data.kind);
    found.push(entry);
  }
  return found;
}

function error(entry, keys, message) {
  const path = jsonPath(keys);
  return `${entry.file}:${position(entry.doc, keys, entry.lines)}: ${entry.id}: ${path}: ${message}`;
}

function validate(entry) {
  try {
    new entry.model(entry.data).validate();
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    for (const err of e.errors) entry.errors.push(error(entry, instanceKeys(err.instancePath), describe(err)));
  }
}

for (const event of ["uncaughtException", "unhandledRejection"]) {
  process.on(event, (e) => {
    console.error(`validate.mjs crashed: ${e?.stack ?? e}`);
    process.exit(3);
  });
}
const files = process.argv.slice(2);
if (!files.length) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}
const entries = [];
for (const file of files) entries.push(...(await documents(file)));
const modelled = entries.filter((e) => e.model);
modelled.forEach(validate);
unknownFields(modelled.map((e) => e.data)).forEach((found, i) => {
  for (const { keys, message } of found) modelled[i].errors.push(error(modelled[i], keys, message));
});
let invalid = 0;
for (const entry of entries) {
  if (entry.errors.length) {
    invalid++;
    for (const line of entry.errors) console.log(line);
  } else if (entry.model) {
    console.log(`ok ${entry.where} ${entry.id}`);
  } else if (UNMODELLED[`${entry.data.apiVersion}/${entry.data.kind}`]) {
    console.log(`skip ${entry.where} ${entry.id}: ${UNMODELLED[`${entry.data.apiVersion}/${entry.data.kind}`]}`);
  } else {
    invalid++;
    console.log(`${entry.file}:${position(entry.doc, [], entry.lines)}: ${entry.id}: no model for ${entry.data.apiVersion} ${entry.data.kind}`);
  }
}
process.exit(invalid ? 1 : 0);
