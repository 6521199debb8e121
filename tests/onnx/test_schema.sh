#!/bin/sh
# Check curvscope's protobuf subset (schemas/onnx.proto) against the upstream
# onnx.proto: every field we declare must exist upstream in the same message,
# with the same field number, the same label and a compatible type.  A field we
# declare int32 where upstream has an enum type is compatible (same varint on the
# wire); a member of an upstream oneof counts as optional.  One TAP line per
# message of ours, with '#' lines naming each difference.
#
# Environment: top_srcdir (default "."), ONNX_PROTO (the upstream file, default
# /usr/lib/python3/dist-packages/onnx/onnx.proto), CS_SCHEMA (our file, default
# $top_srcdir/schemas/onnx.proto; set it to check a modified copy).

top_srcdir=${top_srcdir:-.}
upstream=${ONNX_PROTO:-/usr/lib/python3/dist-packages/onnx/onnx.proto}
ours=${CS_SCHEMA:-$top_srcdir/schemas/onnx.proto}

if [ ! -r "$upstream" ]; then
    echo "1..0 # SKIP no upstream onnx.proto at $upstream"
    exit 0
fi
if [ ! -s "$upstream" ]; then
    echo "1..1"
    echo "not ok 1 - read upstream onnx.proto"
    echo "# $upstream is empty"
    exit 0
fi
if [ ! -r "$ours" ]; then
    echo "1..1"
    echo "not ok 1 - read our schema"
    echo "# cannot read $ours"
    exit 0
fi

# The awk program reads the upstream file first, then ours.  A small lexer turns
# each file into tokens (dropping comments and the contents of string literals);
# a parser keeps a stack of open blocks (message, enum, oneof, other) and reads
# a field statement 'label? type name = number [options]?;' inside a message or
# oneof.  Field records are keyed by file, dotted message path and field name.
${AWK:-awk} '
function scalar(t) {
    return t ~ /^(double|float|int32|int64|uint32|uint64|sint32|sint64|fixed32|fixed64|sfixed32|sfixed64|bool|string|bytes)$/
}
# A type name without package or enclosing-message qualifiers.
function base(t,    n, parts) {
    n = split(t, parts, ".")
    return parts[n]
}
function msgpath(    i, p) {
    p = ""
    for (i = 1; i <= depth; i++)
        if (kind[i] == "message")
            p = (p == "" ? name[i] : p "." name[i])
    return p
}
function field(    i, label, type, fname, num, m) {
    i = 1
    label = ""
    if (st[1] == "optional" || st[1] == "repeated" || st[1] == "required") {
        label = st[1]
        i = 2
    }
    type = st[i]
    if (type == "map") {                       # map<K, V> is a repeated entry
        type = ""
        for (i++; i <= n && st[i] != ">"; i++)
            type = type st[i]
        type = "map" type ">"
        label = "repeated"
    }
    fname = st[i + 1]
    if (st[i + 2] != "=" || st[i + 3] !~ /^[0-9]+$/) {
        bad[file] = bad[file] "\n# " FILENAME ": cannot parse field statement: " stmt()
        return
    }
    num = st[i + 3]
    if (label == "")                           # oneof member, or proto3 singular
        label = "optional"
    m = msgpath()
    key = file SUBSEP m SUBSEP fname
    if (key in fnum)
        bad[file] = bad[file] "\n# " FILENAME ": field " m "." fname " declared twice"
    fnum[key] = num
    flabel[key] = label
    ftype[key] = type
    if (file == 2)
        order[m] = order[m] SUBSEP fname
}
function stmt(    i, s) {
    s = st[1]
    for (i = 2; i <= n; i++)
        s = s " " st[i]
    return s
}
function token(t,    m) {
    if (t == "{") {
        depth++
        if (st[1] == "message" || st[1] == "enum" || st[1] == "oneof") {
            kind[depth] = st[1]
            name[depth] = st[2]
        } else {
            kind[depth] = "other"              # service, extend, option { }, ...
            name[depth] = ""
        }
        if (kind[depth] == "message") {
            m = msgpath()
            if (file == 1)
                upmsg[m] = 1
            else if (!(m in ourmsg)) {
                ourmsg[m] = 1
                msgs[++nmsgs] = m
            }
        }
        if (kind[depth] == "enum" && file == 1)
            upenum[st[2]] = 1
        n = 0
    } else if (t == "}") {
        if (depth > 0)
            depth--
        n = 0
    } else if (t == ";") {
        if (n > 0 && depth > 0 && (kind[depth] == "message" || kind[depth] == "oneof") &&
            st[1] !~ /^(reserved|option|extensions|extend)$/)
            field()
        n = 0
    } else
        st[++n] = t
}
function lex(line,    c, i, j, len, word, q) {
    len = length(line)
    word = ""
    for (i = 1; i <= len; i++) {
        c = substr(line, i, 1)
        if (incomment) {
            if (c == "*" && substr(line, i + 1, 1) == "/") {
                incomment = 0
                i++
            }
            continue
        }
        if (c == "/" && substr(line, i + 1, 1) == "/")
            break
        if (c == "/" && substr(line, i + 1, 1) == "*") {
            if (word != "") { token(word); word = "" }
            incomment = 1
            i++
            continue
        }
        if (c == "\"" || c == "\047") {        # string literal: one token
            if (word != "") { token(word); word = "" }
            q = c
            for (j = i + 1; j <= len && substr(line, j, 1) != q; j++)
                if (substr(line, j, 1) == "\\")
                    j++
            token("\"str\"")
            i = j
            continue
        }
        if (c ~ /[ \t\r]/) {
            if (word != "") { token(word); word = "" }
            continue
        }
        if (c ~ /[{}\[\]();=<>,]/) {
            if (word != "") { token(word); word = "" }
            token(c)
            continue
        }
        word = word c
    }
    if (word != "")
        token(word)
}
FNR == 1 {
    file++
    depth = 0
    n = 0
    incomment = 0
}
{ lex($0) }
END {
    if (bad[1] != "") {
        print "1..1"
        print "not ok 1 - parse upstream " up bad[1]
        exit 0
    }
    if (nmsgs == 0) {
        print "1..1"
        print "not ok 1 - our schema declares messages" (bad[2] != "" ? bad[2] : "")
        exit 0
    }
    print "1.." nmsgs + (bad[2] != "")
    for (k = 1; k <= nmsgs; k++) {
        m = msgs[k]
        diag = ""
        nf = 0
        if (!(m in upmsg))
            diag = diag "\n# message " m " does not exist upstream"
        else {
            cnt = split(substr(order[m], 2), fl, SUBSEP)
            for (j = 1; j <= cnt; j++) {
                f = fl[j]
                nf++
                ok = 2 SUBSEP m SUBSEP f
                uk = 1 SUBSEP m SUBSEP f
                if (!(uk in fnum)) {
                    diag = diag "\n# " m "." f " = " fnum[ok] ": no such field upstream"
                    continue
                }
                if (fnum[ok] != fnum[uk])
                    diag = diag "\n# " m "." f ": number " fnum[ok] ", upstream " fnum[uk]
                if (flabel[ok] != flabel[uk])
                    diag = diag "\n# " m "." f ": " flabel[ok] ", upstream " flabel[uk]
                ot = ftype[ok]
                ut = ftype[uk]
                if (scalar(ot) || scalar(ut)) {
                    same = (ot == ut) || (ot == "int32" && !scalar(ut) && (base(ut) in upenum))
                } else
                    same = (base(ot) == base(ut))
                if (!same)
                    diag = diag "\n# " m "." f ": type " ot ", upstream " ut
            }
        }
        if (diag == "")
            print "ok " k " - message " m " (" nf " fields)"
        else
            print "not ok " k " - message " m diag
    }
    if (bad[2] != "")
        print "not ok " nmsgs + 1 " - parse our schema" bad[2]
}
' up="$upstream" "$upstream" "$ours"
