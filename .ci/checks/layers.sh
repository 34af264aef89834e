#!/usr/bin/env bash
# Layers: a module under src/ imports only from its own layer or a lower one, and no two modules
# of one folder import each other, directly or round a longer loop (a parent and its children
# may: `super::Item` from a child names the parent's item, not a sibling). Every `use` tree
# (groups expanded) and every inline `crate::`, `super::` and `self::` path counts, tests
# included. ARCHITECTURE.md draws the layers; this table is the one that is checked.
#
#   .ci/checks/layers.sh [SRC_DIR]    (default: src)
set -euo pipefail
cd "$(dirname "$0")/../.."
src="${1:-src}"

# Lowest first. `top` may import anything: the crate roots (lib.rs, main.rs) and fuzzing.
layers='
0 netns net
1 probe
2 config
3 results evidence
4 diagnose metrics
5 agent
6 http
7 reflect smoke node_condition
top fuzzing
'

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Every module of the crate, by path: src/agent/state.rs is agent::state, src/agent/mod.rs is
# agent, lib.rs and main.rs are the root (the empty path).
find "$src" -name '*.rs' | sort >"$work/files"
sed -e "s|^$src/||" -e 's|\.rs$||' -e 's|/mod$||' -e 's|^lib$||' -e 's|^main$||' -e 's|/|::|g' \
  "$work/files" >"$work/modules"

awk -v layers="$layers" -v src="$src" -v out="$work/edges" '
function join_parts(parts, from, to,    s, k) {
  s = ""
  for (k = from; k <= to; k++) s = (s == "" ? parts[k] : s "::" parts[k])
  return s
}
function layer_of(top) {
  if (top == "") return "top"
  if (!(top in layer)) {
    printf "%s:%d: module %s is in no layer: add it to the table in .ci/checks/layers.sh and to ARCHITECTURE.md\n", FILENAME, FNR, top
    bad = 1
    layer[top] = "top"
  }
  return layer[top]
}
function above(a, b) {  # layer a is above layer b
  if (a == "top") return b != "top"
  if (b == "top") return 0
  return a + 0 > b + 0
}
# The module a path names: the longest prefix of it that is a module of the crate.
function module_of(abs,    parts, n, k, prefix) {
  n = split(abs, parts, "::")
  for (k = n; k >= 1; k--) {
    prefix = join_parts(parts, 1, k)
    if (prefix in modules) return prefix
  }
  return ""
}
# A path as written in this file, made absolute; "" for another crate.
function absolute(path,    parts, n, k, cur, ncur, curp, first, rest) {
  n = split(path, parts, "::")
  if (parts[n] == "self" || parts[n] == "*") n--
  first = parts[1]
  if (first == "crate" || first == "hybridprobe") return join_parts(parts, 2, n)
  if (first == "super" || first == "self") {
    # Inside an inline module (`mod tests { ... }`), `super` is this file module itself.
    ncur = split(module, curp, "::")
    if (module == "") ncur = 0
    for (k = 1; k <= inline; k++) curp[++ncur] = "<inline>"
    k = 1
    while (parts[k] == "super") { ncur--; k++ }
    if (parts[k] == "self") k++
    cur = join_parts(curp, 1, ncur)
    rest = join_parts(parts, k, n)
    return cur == "" ? rest : (rest == "" ? cur : cur "::" rest)
  }
  # A child module declared in this file (`mod check;` then `use check::...`).
  if (inline == 0 && ((module == "" ? first : module "::" first) in modules))
    return module == "" ? join_parts(parts, 1, n) : module "::" join_parts(parts, 1, n)
  return ""
}
function import(path, line,    abs, target, mine, theirs, mp, tp, nm, nt, k, prefix, same) {
  abs = absolute(path)
  if (abs == "" && path !~ /^(crate|super|self)(::|$)/) return
  target = module_of(abs)
  split(module, mp, "::"); nm = (module == "" ? 0 : split(module, mp, "::"))
  nt = (target == "" ? 0 : split(target, tp, "::"))
  mine = (nm ? mp[1] : ""); theirs = (nt ? tp[1] : "")
  if (mine != "" && mine != theirs && above(layer_of(theirs), layer_of(mine))) {
    printf "%s:%d: %s (layer %s) imports %s from %s (layer %s)\n", FILENAME, line, \
      module, layer_of(mine), path, (theirs == "" ? "the crate root" : theirs), layer_of(theirs)
    bad = 1
  }
  # Sibling edges, at every folder level this file is in: agent/state.rs importing
  # crate::metrics is agent -> metrics in src/, and state -> check in agent/.
  for (k = 1; k <= nm && k <= nt; k++) {
    same = (k == 1) || (join_parts(mp, 1, k - 1) == join_parts(tp, 1, k - 1))
    if (!same) break
    if (mp[k] != tp[k]) {
      prefix = (k == 1 ? "crate" : join_parts(mp, 1, k - 1))
      printf "%s\t%s\t%s\t%s:%d\t%s\n", prefix, mp[k], tp[k], FILENAME, line, path >> out
      break
    }
  }
}
# Expands a use tree without whitespace: a::{b, c::{d, e}} is a::b, a::c::d and a::c::e.
function expand(tree, prefix, line,    i, head, body, depth, start, j, c, part) {
  i = index(tree, "{")
  if (tree == "self") { sub(/::$/, "", prefix); import(prefix, line); return }
  if (i == 0) { import(prefix tree, line); return }
  head = substr(tree, 1, i - 1)
  body = substr(tree, i + 1, length(tree) - i - 1)
  depth = 0; start = 1
  for (j = 1; j <= length(body); j++) {
    c = substr(body, j, 1)
    if (c == "{") depth++
    else if (c == "}") depth--
    else if (c == "," && depth == 0) {
      part = substr(body, start, j - start)
      if (part != "") expand(part, prefix head, line)
      start = j + 1
    }
  }
  part = substr(body, start)
  if (part != "") expand(part, prefix head, line)
}
BEGIN {
  n = split(layers, rows, "\n")
  for (r = 1; r <= n; r++) {
    m = split(rows[r], cols, " ")
    for (c = 2; c <= m; c++) layer[cols[c]] = cols[1]
  }
}
FILENAME ~ /modules$/ { modules[$0] = 1; next }
FNR == 1 {
  module = FILENAME
  sub("^" src "/", "", module); sub(/\.rs$/, "", module); sub(/\/mod$/, "", module)
  if (module == "lib" || module == "main") module = ""
  gsub("/", "::", module)
  inline = 0; in_use = 0
}
{
  line = $0
  i = index(line, "//"); if (i > 0) line = substr(line, 1, i - 1)
  if (inline > 0 && line == indent[inline] "}") { inline--; next }
  if (match(line, /^ *(pub(\([a-z]+\))? )?mod [a-z_0-9]+ \{/)) {
    match(line, /^ */); indent[++inline] = substr(line, 1, RLENGTH); next
  }
  if (!in_use && line ~ /^ *(pub(\([a-z:]+\))? )?use /) { in_use = 1; use = ""; use_line = FNR }
  if (in_use) {
    use = use " " line
    if (index(line, ";")) {
      in_use = 0
      sub(/^ *(pub(\([a-z:]+\))? )?use /, "", use); sub(/;.*$/, "", use)
      gsub(/ as [A-Za-z_0-9]+/, "", use); gsub(/[ \t]/, "", use)
      expand(use, "", use_line)
    }
    next
  }
  while (match(line, /(^|[^$A-Za-z_0-9])(crate|super|self)(::[A-Za-z_][A-Za-z_0-9]*)+/)) {
    path = substr(line, RSTART, RLENGTH)
    sub(/^[^A-Za-z_]/, "", path)
    import(path, FNR)
    line = substr(line, RSTART + RLENGTH)
  }
}
END { exit bad }
' "$work/modules" $(cat "$work/files") >"$work/report" || status=$?
touch "$work/edges"
status="${status:-0}"
cat "$work/report"

# A loop among the siblings of one folder, found by tsort, which names its modules in order:
# each step of it, with the first import that makes it.
for folder in $(cut -f1 "$work/edges" | sort -u); do
  awk -F'\t' -v f="$folder" '$1 == f { print $2, $3 }' "$work/edges" | sort -u >"$work/pairs"
  tsort "$work/pairs" >/dev/null 2>"$work/loop" && continue
  status=1
  # One line per loop tsort found: its modules, in order.
  awk '/input contains a loop/ { if (m != "") print m; m = ""; next }
       sub(/^tsort: /, "") { m = (m == "" ? $0 : m " " $0) }
       END { if (m != "") print m }' "$work/loop" >"$work/loops"
  while read -r members; do
    echo "a loop among the modules of ${folder/#crate/src}: $members"
    awk -F'\t' -v f="$folder" -v m="$members" '
      BEGIN { n = split(m, loop, " "); for (i = 1; i <= n; i++) next_of[loop[i]] = loop[i % n + 1] }
      $1 == f && ($2 in next_of) && next_of[$2] == $3 {
        if (!seen[$2]++) first[$2] = sprintf("%s (%s)", $4, $5)
        count[$2]++
      }
      END {
        for (i = 1; i <= n; i++) {
          a = loop[i]
          more = count[a] > 1 ? sprintf(", and %d more", count[a] - 1) : ""
          printf "  %s -> %s: %s%s\n", a, next_of[a], first[a], more
        }
      }' "$work/edges"
  done <"$work/loops"
done

if [ "$status" != 0 ]; then
  echo "layers: imports against the layers above (see ARCHITECTURE.md)" >&2
  exit 1
fi
echo "layers: $(wc -l <"$work/files") files, every import within its layer or below, no loops"
