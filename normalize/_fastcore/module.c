/* normalize._fastcore: the compiled normalizer, FastNormalizer, as a CPython extension.
 *
 * The Python face of core.c: argument parsing, buffers, building the event and record
 * objects at take time, stats, and the problem log lines. Same public API as
 * normalize.normalizer.Normalizer (the shard is given as index/count, locate % count ==
 * index, as locate_shard does), plus the fast paths process_framed and take_records.
 *
 * No state outside the instances: the module has no globals (multi-phase init, a heap
 * type); each FastNormalizer holds its own references to the Python classes it builds. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>

#include "core.h"
#include "unwire.h"

typedef struct {
    PyObject_HEAD
    fc_core core;
    int ready;
    PyObject *event_class; /* normalize.normalizer.NormalizedEvent */
    PyObject *stats_class; /* normalize.normalizer.NormalizerStats */
    PyObject *topics[FC_TOPICS];
    PyObject *session;
    PyObject *logger;
    uint64_t logged[FC_PROBLEMS]; /* problem counts when last checked for a log line */
    Py_ssize_t last_framed_bytes;
} FastNormalizer;

static const char *const PROBLEM_KINDS[FC_PROBLEMS] = {
    [FC_TRUNCATED] = "undecodable message (TruncatedMessage)",
    [FC_UNKNOWN_TYPE] = "undecodable message (UnknownMessageType)",
    [FC_LENGTH_MISMATCH] = "undecodable message (LengthMismatch)",
    [FC_INVALID_ALPHA] = "undecodable message (InvalidAlphaField)",
    [FC_UNKNOWN_SYMBOL] = "message for an unannounced stock locate",
    [FC_UNKNOWN_ORDER] = "order message for an unknown reference number",
    [FC_DUPLICATE_ORDER] = "order message the book refused (DuplicateOrder)",
    [FC_INVALID_ORDER] = "order message the book refused (InvalidOrder)",
};

static const char *const STAT_NAMES[] = {
    "messages", "skipped_other_shard", "unknown_symbol", "unknown_order", "inconsistent_order",
    "decode_errors", "trades", "quotes", "statuses", "stale_symbols",
};

/* ------------------------------------------------------------------ argument helpers */

/* Parse `npositional` positional arguments then required keyword-only `names` (FASTCALL). */
static int parse_args(const char *function, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, Py_ssize_t npositional, const char *const *names,
                      Py_ssize_t nnames, PyObject **out)
{
    if (nargs != npositional) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s but %zd were given",
                     function, npositional, npositional == 1 ? "" : "s", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < npositional; i++)
        out[i] = args[i];
    for (Py_ssize_t j = 0; j < nnames; j++)
        out[npositional + j] = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j = 0;
        while (j < nnames && PyUnicode_CompareWithASCIIString(name, names[j]) != 0)
            j++;
        if (j == nnames) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         function, name);
            return -1;
        }
        out[npositional + j] = args[nargs + k];
    }
    for (Py_ssize_t j = 0; j < nnames; j++) {
        if (out[npositional + j] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required keyword-only argument: '%s'",
                         function, names[j]);
            return -1;
        }
    }
    return 0;
}

static int to_u64(PyObject *value, const char *name, uint64_t *out)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(value);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "%s must be in 0..2**64-1, got %R", name, value);
        return -1;
    }
    return 0;
}

static int to_i64(PyObject *value, const char *name, int64_t *out)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "%s must be in -2**63..2**63-1, got %R", name, value);
        return -1;
    }
    return 0;
}

static int to_i32(PyObject *value, const char *name, int32_t *out)
{
    int64_t wide;
    if (to_i64(value, name, &wide) != 0)
        return -1;
    if (wide < INT32_MIN || wide > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s must be in -2**31..2**31-1, got %R", name, value);
        return -1;
    }
    *out = (int32_t)wide;
    return 0;
}

/* ------------------------------------------------------------------------- logging */

static void log_call(FastNormalizer *self, const char *level, PyObject *args)
{
    if (args == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
        return;
    }
    PyObject *method = PyObject_GetAttrString(self->logger, level);
    PyObject *result = method ? PyObject_Call(method, args, NULL) : NULL;
    if (result == NULL)
        PyErr_WriteUnraisable((PyObject *)self);
    Py_XDECREF(result);
    Py_XDECREF(method);
    Py_DECREF(args);
}

/* How normalize.errors.describe_type_byte shows a type byte: 'A' (0x41), or 0x00. */
static void describe_type(char *out, size_t size, uint8_t type)
{
    if (type == '\'')
        snprintf(out, size, "\"'\" (0x27)");
    else if (type == '\\')
        snprintf(out, size, "'\\\\' (0x5c)");
    else if (type >= 0x21 && type <= 0x7E)
        snprintf(out, size, "'%c' (0x%02x)", type, type);
    else
        snprintf(out, size, "0x%02x", type);
}

/* The latest message of a problem kind, worded like the Python normalizer's log line. */
static void describe_problem(const fc_core *c, int kind, char *out, size_t size)
{
    const fc_problem_detail *d = &c->problem_detail[kind];
    const fc_symbol *s = c->symbols ? c->symbols[d->locate] : NULL;
    int symbol_len = s ? s->symbol_len : 0;
    const char *symbol = s ? s->symbol : "";
    unsigned long long ref = (unsigned long long)d->ref;
    char type[24];
    describe_type(type, sizeof type, d->type);
    switch (kind) {
    case FC_TRUNCATED:
        snprintf(out, size, "truncated ITCH 5.0 message at offset 0: needs 1 byte, only 0 "
                            "available");
        break;
    case FC_UNKNOWN_TYPE:
        snprintf(out, size, "unknown ITCH 5.0 message type %s at offset 0", type);
        break;
    case FC_LENGTH_MISMATCH:
        snprintf(out, size,
                 "ITCH 5.0 message type %s at offset 0 is %u bytes long, but its frame says %zu",
                 type, (unsigned)itch_lengths[d->type], d->length);
        break;
    case FC_INVALID_ALPHA:
        snprintf(out, size, "ITCH 5.0 message type %s at offset 0: an Alpha field holds "
                            "non-ASCII bytes", type);
        break;
    case FC_UNKNOWN_SYMBOL:
        snprintf(out, size, "'%c' for locate %u", d->type, (unsigned)d->locate);
        break;
    case FC_UNKNOWN_ORDER:
        snprintf(out, size, "order book '%.*s' has no live order with reference number %llu",
                 symbol_len, symbol, ref);
        break;
    case FC_DUPLICATE_ORDER:
        snprintf(out, size,
                 "order book '%.*s' already has a live order with reference number %llu",
                 symbol_len, symbol, ref);
        break;
    default:
        snprintf(out, size, "order book '%.*s', order %llu: its side or shares are invalid",
                 symbol_len, symbol, ref);
        break;
    }
}

/* After a call: log each problem kind whose count reached a power of ten (1, 10, 100, …)
 * since the last check, with the count; and a start of messages that recovered books. */
static void log_problems(FastNormalizer *self)
{
    fc_core *c = &self->core;
    for (int k = 0; k < FC_PROBLEMS; k++) {
        uint64_t count = c->problems[k];
        if (count == self->logged[k])
            continue;
        uint64_t power = 1;
        while (power <= count / 10)
            power *= 10;
        if (power > self->logged[k]) {
            char latest[200];
            describe_problem(c, k, latest, sizeof latest);
            log_call(self, "warning",
                     Py_BuildValue("(sKss)", "skipped %d ITCH message(s) so far: %s; latest: %s",
                                   (unsigned long long)count, PROBLEM_KINDS[k], latest));
        }
        self->logged[k] = count;
    }
    if (c->recovered_books) {
        log_call(self, "info",
                 Py_BuildValue("(sKK)", "start of messages at sequence %d: %d stale book(s) recover",
                               (unsigned long long)c->recovered_seq,
                               (unsigned long long)c->recovered_books));
        c->recovered_books = 0;
    }
}

/* --------------------------------------------------------------------- the type */

static int check_ready(FastNormalizer *self)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "FastNormalizer.__init__ was not called");
        return -1;
    }
    return 0;
}

static PyObject *no_memory(void)
{
    return PyErr_NoMemory();
}

static int FastNormalizer_traverse(FastNormalizer *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->event_class);
    Py_VISIT(self->stats_class);
    for (int i = 0; i < FC_TOPICS; i++)
        Py_VISIT(self->topics[i]);
    Py_VISIT(self->session);
    Py_VISIT(self->logger);
    return 0;
}

static int FastNormalizer_clear(FastNormalizer *self)
{
    Py_CLEAR(self->event_class);
    Py_CLEAR(self->stats_class);
    for (int i = 0; i < FC_TOPICS; i++)
        Py_CLEAR(self->topics[i]);
    Py_CLEAR(self->session);
    Py_CLEAR(self->logger);
    return 0;
}

static void FastNormalizer_dealloc(FastNormalizer *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    FastNormalizer_clear(self);
    if (self->ready)
        fc_free(&self->core);
    self->ready = 0;
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *import_attr(const char *module_name, const char *name)
{
    PyObject *module = PyImport_ImportModule(module_name);
    if (module == NULL)
        return NULL;
    PyObject *attr = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return attr;
}

static int FastNormalizer_init(FastNormalizer *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"midnight_ns", "session", "shard_index", "shard_count",
                               "match_memory", NULL};
    PyObject *midnight = NULL, *session = NULL;
    Py_ssize_t shard_index = 0, shard_count = 1, match_memory = 1 << 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OUnnn:FastNormalizer", keywords,
                                     &midnight, &session, &shard_index, &shard_count,
                                     &match_memory))
        return -1;
    if (midnight == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "FastNormalizer() missing required keyword-only argument: 'midnight_ns'");
        return -1;
    }
    int64_t midnight_ns;
    if (to_i64(midnight, "midnight_ns", &midnight_ns) != 0)
        return -1;
    if (shard_count < 1 || shard_count > FC_LOCATES) {
        PyErr_Format(PyExc_ValueError, "shard_count must be in 1..%d, got %zd", FC_LOCATES,
                     shard_count);
        return -1;
    }
    if (shard_index < 0 || shard_index >= shard_count) {
        PyErr_Format(PyExc_ValueError, "shard_index must be in 0..%zd, got %zd",
                     shard_count - 1, shard_index);
        return -1;
    }
    if (match_memory < 0) {
        PyErr_Format(PyExc_ValueError, "match_memory must be >= 0, got %zd", match_memory);
        return -1;
    }
    Py_ssize_t session_len = 0;
    const char *session_utf8 = "";
    if (session != NULL) {
        session_utf8 = PyUnicode_AsUTF8AndSize(session, &session_len);
        if (session_utf8 == NULL)
            return -1;
    }

    PyObject *event_class = import_attr("normalize.normalizer", "NormalizedEvent");
    PyObject *stats_class = import_attr("normalize.normalizer", "NormalizerStats");
    PyObject *trades = import_attr("tickerplant.topics", "MD_TRADES");
    PyObject *quotes = import_attr("tickerplant.topics", "MD_QUOTES");
    PyObject *status = import_attr("tickerplant.topics", "MD_STATUS");
    PyObject *get_logger = import_attr("logging", "getLogger");
    PyObject *logger = get_logger ? PyObject_CallFunction(get_logger, "s", "normalize.fast")
                                  : NULL;
    Py_XDECREF(get_logger);
    if (!event_class || !stats_class || !trades || !quotes || !status || !logger) {
        Py_XDECREF(event_class);
        Py_XDECREF(stats_class);
        Py_XDECREF(trades);
        Py_XDECREF(quotes);
        Py_XDECREF(status);
        Py_XDECREF(logger);
        return -1;
    }

    /* __init__ may be called again: start afresh. */
    if (self->ready)
        fc_free(&self->core);
    self->ready = 0;
    FastNormalizer_clear(self);
    memset(self->logged, 0, sizeof self->logged);
    self->last_framed_bytes = 0;
    self->event_class = event_class;
    self->stats_class = stats_class;
    self->topics[FC_TRADES] = trades;
    self->topics[FC_QUOTES] = quotes;
    self->topics[FC_STATUS] = status;
    self->logger = logger;
    self->session = session ? session : PyUnicode_FromString("");
    if (session)
        Py_INCREF(session);
    if (self->session == NULL)
        return -1;
    if (fc_init(&self->core, midnight_ns, session_utf8, (size_t)session_len,
                (uint32_t)shard_index, (uint32_t)shard_count, (size_t)match_memory) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    return 0;
}

/* ------------------------------------------------------------------------- input */

static PyObject *FastNormalizer_process(FastNormalizer *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"seq", "receive_ts_ns"};
    PyObject *a[3];
    uint64_t seq;
    int64_t receive_ts_ns;
    if (check_ready(self) || parse_args("process", args, nargs, kwnames, 1, names, 2, a) ||
        to_u64(a[1], "seq", &seq) || to_i64(a[2], "receive_ts_ns", &receive_ts_ns))
        return NULL;
    int result;
    if (PyBytes_CheckExact(a[0])) {
        result = fc_process(&self->core, (const uint8_t *)PyBytes_AS_STRING(a[0]),
                            (size_t)PyBytes_GET_SIZE(a[0]), seq, receive_ts_ns);
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) != 0)
            return NULL;
        result = fc_process(&self->core, view.buf, (size_t)view.len, seq, receive_ts_ns);
        PyBuffer_Release(&view);
    }
    if (result != 0)
        return no_memory();
    log_problems(self);
    Py_RETURN_NONE;
}

static PyObject *FastNormalizer_process_framed(FastNormalizer *self, PyObject *const *args,
                                               Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"first_seq", "receive_ts_ns"};
    PyObject *a[3];
    uint64_t seq;
    int64_t receive_ts_ns;
    if (check_ready(self) ||
        parse_args("process_framed", args, nargs, kwnames, 1, names, 2, a) ||
        to_u64(a[1], "first_seq", &seq) || to_i64(a[2], "receive_ts_ns", &receive_ts_ns))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const uint8_t *data = view.buf;
    size_t size = (size_t)view.len, position = 0;
    uint64_t count = 0;
    int result = 0;
    /* Each frame: a 2-byte big-endian length, then that many bytes of message. A frame
     * that does not fit entirely in the buffer is left for the caller's next buffer. */
    while (size - position >= 2) {
        size_t length = itch_u16(data + position);
        if (size - position - 2 < length)
            break;
        result = fc_process(&self->core, data + position + 2, length, seq + count,
                            receive_ts_ns);
        if (result != 0)
            break;
        count++;
        position += 2 + length;
    }
    PyBuffer_Release(&view);
    self->last_framed_bytes = (Py_ssize_t)position;
    if (result != 0)
        return no_memory();
    log_problems(self);
    return PyLong_FromUnsignedLongLong(count);
}

static PyObject *FastNormalizer_process_messages(FastNormalizer *self, PyObject *const *args,
                                                 Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"first_seq", "receive_ts_ns"};
    PyObject *a[3];
    uint64_t seq;
    int64_t receive_ts_ns;
    if (check_ready(self) ||
        parse_args("process_messages", args, nargs, kwnames, 1, names, 2, a) ||
        to_u64(a[1], "first_seq", &seq) || to_i64(a[2], "receive_ts_ns", &receive_ts_ns))
        return NULL;
    PyObject *items = PySequence_Fast(a[0], "process_messages() needs an iterable of messages");
    if (items == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    PyObject **item = PySequence_Fast_ITEMS(items);
    Py_ssize_t done = 0;
    int result = 0;
    for (; done < count; done++) {
        PyObject *message = item[done];
        if (PyBytes_CheckExact(message)) {
            result = fc_process(&self->core, (const uint8_t *)PyBytes_AS_STRING(message),
                                (size_t)PyBytes_GET_SIZE(message), seq + (uint64_t)done,
                                receive_ts_ns);
        } else {
            Py_buffer view;
            if (PyObject_GetBuffer(message, &view, PyBUF_SIMPLE) != 0) {
                result = -2;
                break;
            }
            result = fc_process(&self->core, view.buf, (size_t)view.len, seq + (uint64_t)done,
                                receive_ts_ns);
            PyBuffer_Release(&view);
        }
        if (result != 0)
            break;
    }
    Py_DECREF(items);
    log_problems(self);
    if (result == -1)
        return no_memory();
    if (result == -2)
        return NULL; /* a message that is not a buffer; the ones before it were applied */
    return PyLong_FromSsize_t(done);
}

static PyObject *FastNormalizer_mark_stale(FastNormalizer *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"seq", "receive_ts_ns", "reason"};
    PyObject *a[3];
    uint64_t seq;
    int64_t receive_ts_ns;
    if (check_ready(self) || parse_args("mark_stale", args, nargs, kwnames, 0, names, 3, a) ||
        to_u64(a[0], "seq", &seq) || to_i64(a[1], "receive_ts_ns", &receive_ts_ns))
        return NULL;
    if (!PyUnicode_Check(a[2])) {
        PyErr_Format(PyExc_TypeError, "reason must be a str, not %.100s",
                     Py_TYPE(a[2])->tp_name);
        return NULL;
    }
    Py_ssize_t len;
    const char *reason = PyUnicode_AsUTF8AndSize(a[2], &len);
    if (reason == NULL)
        return NULL;
    long newly = fc_mark_stale(&self->core, seq, receive_ts_ns, reason, (size_t)len);
    if (newly < 0)
        return no_memory();
    log_call(self, "info",
             Py_BuildValue("(sllKO)",
                           "marked %d symbol book(s) stale (%d stale now) at sequence %d: %s",
                           newly, (long)self->core.stats.stale_symbols, (unsigned long long)seq,
                           a[2]));
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ output */

static int parse_publish(FastNormalizer *self, const char *function, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames, int64_t *publish_ts_ns)
{
    static const char *const names[] = {"publish_ts_ns"};
    PyObject *a[1];
    if (check_ready(self) || parse_args(function, args, nargs, kwnames, 0, names, 1, a) ||
        to_i64(a[0], "publish_ts_ns", publish_ts_ns))
        return -1;
    return 0;
}

static PyObject *FastNormalizer_take_events(FastNormalizer *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t publish_ts_ns;
    if (parse_publish(self, "take_events", args, nargs, kwnames, &publish_ts_ns) != 0)
        return NULL;
    fc_core *c = &self->core;
    PyObject *events = PyList_New((Py_ssize_t)c->event_count);
    if (events == NULL)
        return NULL;
    for (size_t i = 0; i < c->event_count; i++) {
        const fc_event *e = &c->events[i];
        size_t size = fc_event_payload_size(c, e, publish_ts_ns);
        PyObject *payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        PyObject *symbol = PyUnicode_DecodeASCII(e->symbol, e->symbol_len, NULL);
        PyObject *event = NULL;
        if (payload != NULL && symbol != NULL) {
            fc_event_payload_write(c, e, publish_ts_ns, (uint8_t *)PyBytes_AS_STRING(payload));
            event = PyObject_CallFunctionObjArgs(self->event_class, self->topics[e->topic],
                                                 symbol, payload, NULL);
        }
        Py_XDECREF(payload);
        Py_XDECREF(symbol);
        if (event == NULL) {
            Py_DECREF(events); /* the events stay queued */
            return NULL;
        }
        PyList_SET_ITEM(events, (Py_ssize_t)i, event);
    }
    fc_events_reset(c);
    return events;
}

static PyObject *FastNormalizer_take_records(FastNormalizer *self, PyObject *const *args,
                                             Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t publish_ts_ns;
    if (parse_publish(self, "take_records", args, nargs, kwnames, &publish_ts_ns) != 0)
        return NULL;
    fc_core *c = &self->core;
    fc_group *groups;
    uint32_t *next, *sizes;
    size_t ngroups;
    if (fc_group_events(c, publish_ts_ns, &groups, &ngroups, &next, &sizes) != 0)
        return no_memory();
    PyObject *records = PyList_New((Py_ssize_t)ngroups);
    for (size_t g = 0; records != NULL && g < ngroups; g++) {
        const fc_event *first = &c->events[groups[g].first];
        PyObject *key = PyBytes_FromStringAndSize(first->symbol, first->symbol_len);
        PyObject *value = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)groups[g].batch_size);
        PyObject *record = NULL;
        if (key != NULL && value != NULL) {
            fc_group_write(c, &groups[g], next, sizes, publish_ts_ns,
                           (uint8_t *)PyBytes_AS_STRING(value));
            record = PyTuple_Pack(3, self->topics[first->topic], key, value);
        }
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (record == NULL) {
            Py_CLEAR(records); /* the events stay queued */
            break;
        }
        PyList_SET_ITEM(records, (Py_ssize_t)g, record);
    }
    free(groups);
    free(next);
    free(sizes);
    if (records != NULL)
        fc_events_reset(c);
    return records;
}

/* ----------------------------------------------------------------------- queries */

static PyObject *FastNormalizer_get_stats(FastNormalizer *self, void *closure)
{
    (void)closure;
    if (check_ready(self))
        return NULL;
    const fc_stats *s = &self->core.stats;
    const uint64_t values[] = {s->messages,       s->skipped_other_shard, s->unknown_symbol,
                               s->unknown_order,  s->inconsistent_order,  s->decode_errors,
                               s->trades,         s->quotes,              s->statuses,
                               s->stale_symbols};
    PyObject *kwargs = PyDict_New();
    if (kwargs == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        PyObject *value = PyLong_FromUnsignedLongLong(values[i]);
        if (value == NULL || PyDict_SetItemString(kwargs, STAT_NAMES[i], value) != 0) {
            Py_XDECREF(value);
            Py_DECREF(kwargs);
            return NULL;
        }
        Py_DECREF(value);
    }
    PyObject *empty = PyTuple_New(0);
    PyObject *stats = empty ? PyObject_Call(self->stats_class, empty, kwargs) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(kwargs);
    return stats;
}

static PyObject *FastNormalizer_get_pending_events(FastNormalizer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->ready ? self->core.event_count : 0);
}

static PyObject *FastNormalizer_get_memory_bytes(FastNormalizer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->ready ? fc_memory(&self->core) : 0);
}

static PyObject *FastNormalizer_get_last_framed_bytes(FastNormalizer *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->last_framed_bytes);
}

static PyObject *FastNormalizer_get_last_exchange_ts_ns(FastNormalizer *self, void *closure)
{
    (void)closure;
    if (check_ready(self))
        return NULL;
    /* As the Python property: 0 while the last timestamp is 0 (or none was seen). */
    const fc_core *c = &self->core;
    return PyLong_FromLongLong(c->last_timestamp ? (long long)((uint64_t)c->midnight_ns +
                                                               c->last_timestamp)
                                                 : 0);
}

static PyObject *FastNormalizer_get_session(FastNormalizer *self, void *closure)
{
    (void)closure;
    if (check_ready(self))
        return NULL;
    return Py_NewRef(self->session);
}

static PyObject *FastNormalizer_symbols(FastNormalizer *self, PyObject *unused)
{
    (void)unused;
    if (check_ready(self))
        return NULL;
    size_t count;
    const uint16_t *locates = fc_announced(&self->core, &count);
    PyObject *symbols = PyDict_New();
    for (size_t i = 0; symbols != NULL && i < count; i++) {
        const fc_symbol *s = self->core.symbols[locates[i]];
        PyObject *locate = PyLong_FromLong(locates[i]);
        PyObject *symbol = PyUnicode_DecodeASCII(s->symbol, s->symbol_len, NULL);
        if (locate == NULL || symbol == NULL || PyDict_SetItem(symbols, locate, symbol) != 0)
            Py_CLEAR(symbols);
        Py_XDECREF(locate);
        Py_XDECREF(symbol);
    }
    return symbols;
}

static const fc_symbol *symbol_arg(FastNormalizer *self, PyObject *arg, int *known)
{
    *known = 0;
    if (check_ready(self))
        return NULL;
    long locate = PyLong_AsLong(arg);
    if (locate == -1 && PyErr_Occurred())
        return NULL;
    if (locate < 0 || locate >= FC_LOCATES)
        return NULL;
    *known = self->core.symbols[locate] != NULL;
    return self->core.symbols[locate];
}

static PyObject *FastNormalizer_is_stale(FastNormalizer *self, PyObject *arg)
{
    int known;
    const fc_symbol *s = symbol_arg(self, arg, &known);
    if (s == NULL && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(s != NULL && s->stale);
}

static PyObject *FastNormalizer_problem_counts(FastNormalizer *self, PyObject *unused)
{
    (void)unused;
    if (check_ready(self))
        return NULL;
    PyObject *counts = PyDict_New();
    for (int k = 0; counts != NULL && k < FC_PROBLEMS; k++) {
        if (self->core.problems[k] == 0)
            continue;
        PyObject *value = PyLong_FromUnsignedLongLong(self->core.problems[k]);
        if (value == NULL || PyDict_SetItemString(counts, PROBLEM_KINDS[k], value) != 0)
            Py_CLEAR(counts);
        Py_XDECREF(value);
    }
    return counts;
}

/* [(ref, side, price, shares)] of a locate's live orders (table order), or None. */
static PyObject *FastNormalizer_orders(FastNormalizer *self, PyObject *arg)
{
    int known;
    const fc_symbol *s = symbol_arg(self, arg, &known);
    if (s == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    const order_table *t = &s->book.orders;
    PyObject *orders = PyList_New(0);
    size_t capacity = t->slots ? (size_t)t->mask + 1 : 0;
    for (size_t i = 0; orders != NULL && i < capacity; i++) {
        const book_order *o = &t->slots[i];
        if (o->shares == 0)
            continue;
        PyObject *item = Py_BuildValue("(KCkk)", (unsigned long long)o->ref, (int)o->side,
                                       (unsigned long)o->price, (unsigned long)o->shares);
        if (item == NULL || PyList_Append(orders, item) != 0)
            Py_CLEAR(orders);
        Py_XDECREF(item);
    }
    return orders;
}

static PyObject *side_levels(const book_side *side, int asks)
{
    PyObject *levels = PyList_New((Py_ssize_t)side->count);
    for (uint32_t i = 0; levels != NULL && i < side->count; i++) {
        const book_level *l = &side->levels[side->count - 1 - i]; /* best first */
        uint32_t price = asks ? ~l->key : l->key;
        PyObject *item = Py_BuildValue("(kK)", (unsigned long)price, (unsigned long long)l->size);
        if (item == NULL) {
            Py_CLEAR(levels);
            break;
        }
        PyList_SET_ITEM(levels, (Py_ssize_t)i, item);
    }
    return levels;
}

/* ([(price, size)] bids best first, [(price, size)] asks best first), or None. */
static PyObject *FastNormalizer_levels(FastNormalizer *self, PyObject *arg)
{
    int known;
    const fc_symbol *s = symbol_arg(self, arg, &known);
    if (s == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *bids = side_levels(&s->book.bids, 0);
    PyObject *asks = bids ? side_levels(&s->book.asks, 1) : NULL;
    PyObject *result = asks ? PyTuple_Pack(2, bids, asks) : NULL;
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    return result;
}

static PyMethodDef FastNormalizer_methods[] = {
    {"process", (PyCFunction)(void (*)(void))FastNormalizer_process,
     METH_FASTCALL | METH_KEYWORDS,
     "process(payload, *, seq, receive_ts_ns)\n--\n\n"
     "Apply one ITCH message given as its exact bytes (a MoldUDP64 message block)."},
    {"process_framed", (PyCFunction)(void (*)(void))FastNormalizer_process_framed,
     METH_FASTCALL | METH_KEYWORDS,
     "process_framed(buffer, *, first_seq, receive_ts_ns)\n--\n\n"
     "Apply every complete frame (2-byte big-endian length, then the message) in buffer;\n"
     "message i gets seq first_seq + i. Returns the number of messages applied; a frame\n"
     "cut off by the end of the buffer is not applied, and last_framed_bytes tells where\n"
     "it starts."},
    {"process_messages", (PyCFunction)(void (*)(void))FastNormalizer_process_messages,
     METH_FASTCALL | METH_KEYWORDS,
     "process_messages(messages, *, first_seq, receive_ts_ns)\n--\n\n"
     "Apply each message of a sequence of buffers (a MoldUDP64 packet's messages, say);\n"
     "message i gets seq first_seq + i. Returns the number applied."},
    {"mark_stale", (PyCFunction)(void (*)(void))FastNormalizer_mark_stale,
     METH_FASTCALL | METH_KEYWORDS,
     "mark_stale(*, seq, receive_ts_ns, reason)\n--\n\n"
     "Messages were lost for good: every owned symbol's book is stale until the next 'O'."},
    {"take_events", (PyCFunction)(void (*)(void))FastNormalizer_take_events,
     METH_FASTCALL | METH_KEYWORDS,
     "take_events(*, publish_ts_ns)\n--\n\n"
     "The events queued since the last take, in feed order, as NormalizedEvent."},
    {"take_records", (PyCFunction)(void (*)(void))FastNormalizer_take_records,
     METH_FASTCALL | METH_KEYWORDS,
     "take_records(*, publish_ts_ns)\n--\n\n"
     "The events queued since the last take as bus records (topic, key, EventBatch bytes),\n"
     "equal to batch_records(take_events(publish_ts_ns=...))."},
    {"symbols", (PyCFunction)FastNormalizer_symbols, METH_NOARGS,
     "symbols()\n--\n\nEvery announced, owned locate and its symbol."},
    {"is_stale", (PyCFunction)FastNormalizer_is_stale, METH_O,
     "is_stale(stock_locate, /)\n--\n\nWhether the book of stock_locate is stale."},
    {"problem_counts", (PyCFunction)FastNormalizer_problem_counts, METH_NOARGS,
     "problem_counts()\n--\n\nHow many messages were skipped, by kind of problem."},
    {"_orders", (PyCFunction)FastNormalizer_orders, METH_O,
     "_orders(stock_locate, /)\n--\n\n"
     "[(ref, side, price, shares)] of the locate's live orders, or None if unannounced."},
    {"_levels", (PyCFunction)FastNormalizer_levels, METH_O,
     "_levels(stock_locate, /)\n--\n\n"
     "(bids, asks) as [(price, aggregate shares)] best first, or None if unannounced."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FastNormalizer_getset[] = {
    {"stats", (getter)FastNormalizer_get_stats, NULL,
     "A NormalizerStats snapshot of the counts (a new object on each access).", NULL},
    {"pending_events", (getter)FastNormalizer_get_pending_events, NULL,
     "How many events take_events would return now.", NULL},
    {"memory_bytes", (getter)FastNormalizer_get_memory_bytes, NULL,
     "Bytes held on the C heap (books, queued events, match memory).", NULL},
    {"last_framed_bytes", (getter)FastNormalizer_get_last_framed_bytes, NULL,
     "Bytes of the buffer the last process_framed call consumed.", NULL},
    {"last_exchange_ts_ns", (getter)FastNormalizer_get_last_exchange_ts_ns, NULL,
     "Exchange time (epoch ns) of the last message dispatched; 0 before any.", NULL},
    {"session", (getter)FastNormalizer_get_session, NULL, "The session stamped on events.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(FastNormalizer_doc,
             "FastNormalizer(*, midnight_ns, session='', shard_index=0, shard_count=1, "
             "match_memory=1048576)\n--\n\n"
             "The compiled normalizer: same rules and events as "
             "normalize.normalizer.Normalizer,\nwhich owns the locates with "
             "locate % shard_count == shard_index.");

static PyType_Slot FastNormalizer_slots[] = {
    {Py_tp_doc, (void *)FastNormalizer_doc},
    {Py_tp_init, FastNormalizer_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, FastNormalizer_dealloc},
    {Py_tp_traverse, FastNormalizer_traverse},
    {Py_tp_clear, FastNormalizer_clear},
    {Py_tp_methods, FastNormalizer_methods},
    {Py_tp_getset, FastNormalizer_getset},
    {0, NULL},
};

static PyType_Spec FastNormalizer_spec = {
    .name = "normalize._fastcore.FastNormalizer",
    .basicsize = sizeof(FastNormalizer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = FastNormalizer_slots,
};

/* ------------------------------------------------------------- module functions */

static PyObject *decode_framed(PyObject *module, PyObject *buffer)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const uint8_t *data = view.buf;
    size_t size = (size_t)view.len, position = 0;
    uint64_t decoded = 0, errors = 0, checksum = 0;
    itch_message m;
    memset(&m, 0, sizeof m); /* the checksum reads union bytes a short type leaves alone */
    Py_BEGIN_ALLOW_THREADS
    while (size - position >= 2) {
        size_t length = itch_u16(data + position);
        if (size - position - 2 < length)
            break;
        if (itch_decode(data + position + 2, length, &m) == ITCH_OK) {
            decoded++;
            uint64_t word;
            memcpy(&word, &m.u, sizeof word);
            checksum += m.timestamp ^ m.locate ^ word;
        } else {
            errors++;
        }
        position += 2 + length;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(KKKn)", (unsigned long long)decoded, (unsigned long long)errors,
                         (unsigned long long)checksum, (Py_ssize_t)position);
}

static PyObject *layout_table(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyObject *table = PyDict_New();
    for (int type = 0; table != NULL && type < 256; type++) {
        if (itch_lengths[type] == 0)
            continue;
        PyObject *spans = PyList_New(0);
        for (const itch_alpha_span *s = itch_alpha_spans[type]; spans && s->size; s++) {
            PyObject *span = Py_BuildValue("(ii)", s->offset, s->size);
            if (span == NULL || PyList_Append(spans, span) != 0)
                Py_CLEAR(spans);
            Py_XDECREF(span);
        }
        PyObject *entry = spans ? Py_BuildValue("(iN)", itch_lengths[type], spans) : NULL;
        PyObject *key = PyLong_FromLong(type);
        if (entry == NULL || key == NULL || PyDict_SetItem(table, key, entry) != 0)
            Py_CLEAR(table);
        Py_XDECREF(entry);
        Py_XDECREF(key);
    }
    return table;
}

/* Keyword arguments of the encode_* test helpers: every field optional, default 0 or "". */
typedef struct {
    const char *name;
    char kind; /* 's' str, 'i' int64, 'u' uint64, 'e' int32 enum, 'b' bool */
    void *out;
} field_arg;

static int parse_fields(const char *function, PyObject *args, PyObject *kwargs,
                        field_arg *fields, size_t nfields)
{
    if (args != NULL && PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes keyword arguments only", function);
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (kwargs != NULL && PyDict_Next(kwargs, &pos, &name, &value)) {
        size_t j = 0;
        while (j < nfields && PyUnicode_CompareWithASCIIString(name, fields[j].name) != 0)
            j++;
        if (j == nfields) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         function, name);
            return -1;
        }
        switch (fields[j].kind) {
        case 's': {
            Py_ssize_t len;
            const char *text = PyUnicode_AsUTF8AndSize(value, &len);
            if (text == NULL)
                return -1;
            *(wire_str *)fields[j].out = (wire_str){text, (size_t)len};
            break;
        }
        case 'i':
            if (to_i64(value, fields[j].name, fields[j].out))
                return -1;
            break;
        case 'u':
            if (to_u64(value, fields[j].name, fields[j].out))
                return -1;
            break;
        case 'e':
            if (to_i32(value, fields[j].name, fields[j].out))
                return -1;
            break;
        default: {
            int truth = PyObject_IsTrue(value);
            if (truth < 0)
                return -1;
            *(int *)fields[j].out = truth;
        }
        }
    }
    return 0;
}

static PyObject *finish_encoding(size_t size, uint8_t *(*write)(uint8_t *, const void *),
                                 const void *message)
{
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (bytes == NULL)
        return NULL;
    uint8_t *end = write((uint8_t *)PyBytes_AS_STRING(bytes), message);
    if ((size_t)(end - (uint8_t *)PyBytes_AS_STRING(bytes)) != size) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_SystemError, "wire size and written bytes differ");
        return NULL;
    }
    return bytes;
}

static uint8_t *write_trade(uint8_t *out, const void *m) { return wire_trade_write(out, m); }
static uint8_t *write_quote(uint8_t *out, const void *m) { return wire_quote_write(out, m); }
static uint8_t *write_status(uint8_t *out, const void *m) { return wire_status_write(out, m); }

static PyObject *encode_trade(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    wire_trade t = {0};
    field_arg fields[] = {
        {"symbol", 's', &t.symbol},       {"exchange_ts_ns", 'i', &t.exchange_ts_ns},
        {"seq", 'u', &t.seq},             {"receive_ts_ns", 'i', &t.receive_ts_ns},
        {"publish_ts_ns", 'i', &t.publish_ts_ns}, {"price", 'i', &t.price},
        {"size", 'u', &t.size},           {"side", 'e', &t.side},
        {"match_number", 'u', &t.match_number},   {"kind", 'e', &t.kind},
        {"cross_type", 's', &t.cross_type},       {"session", 's', &t.session},
    };
    if (parse_fields("encode_trade", args, kwargs, fields, sizeof fields / sizeof *fields))
        return NULL;
    return finish_encoding(wire_trade_size(&t), write_trade, &t);
}

static PyObject *encode_quote(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    wire_quote q = {0};
    field_arg fields[] = {
        {"symbol", 's', &q.symbol},       {"exchange_ts_ns", 'i', &q.exchange_ts_ns},
        {"seq", 'u', &q.seq},             {"receive_ts_ns", 'i', &q.receive_ts_ns},
        {"publish_ts_ns", 'i', &q.publish_ts_ns}, {"bid_price", 'i', &q.bid_price},
        {"bid_size", 'u', &q.bid_size},   {"ask_price", 'i', &q.ask_price},
        {"ask_size", 'u', &q.ask_size},   {"session", 's', &q.session},
    };
    if (parse_fields("encode_quote", args, kwargs, fields, sizeof fields / sizeof *fields))
        return NULL;
    return finish_encoding(wire_quote_size(&q), write_quote, &q);
}

static PyObject *encode_status(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    wire_status s = {0};
    field_arg fields[] = {
        {"symbol", 's', &s.symbol},       {"exchange_ts_ns", 'i', &s.exchange_ts_ns},
        {"seq", 'u', &s.seq},             {"receive_ts_ns", 'i', &s.receive_ts_ns},
        {"publish_ts_ns", 'i', &s.publish_ts_ns}, {"kind", 'e', &s.kind},
        {"code", 's', &s.code},           {"reason", 's', &s.reason},
        {"halted", 'b', &s.halted},       {"session", 's', &s.session},
    };
    if (parse_fields("encode_status", args, kwargs, fields, sizeof fields / sizeof *fields))
        return NULL;
    return finish_encoding(wire_status_size(&s), write_status, &s);
}

/* ------------------------------------------------------------------ md.trades records */

static int append_trade(void *ctx, const uw_trade *t)
{
    /* The tuple built item by item: Py_BuildValue would parse its format for each trade. */
    PyObject *item = PyTuple_New(6);
    if (item == NULL)
        return 1;
    PyObject *values[5] = {
        PyLong_FromLongLong(t->exchange_ts_ns),
        PyLong_FromUnsignedLongLong(t->seq),
        PyLong_FromLongLong(t->price),
        PyLong_FromUnsignedLongLong(t->size),
        PyLong_FromUnsignedLongLong(t->match_number),
    };
    int failed = 0;
    for (Py_ssize_t i = 0; i < 5; i++) {
        if (values[i] == NULL)
            failed = 1;
        PyTuple_SET_ITEM(item, i, values[i]); /* steals; a NULL slot is fine for DECREF */
    }
    PyObject *broken = t->kind == UW_TRADE_KIND_BROKEN ? Py_True : Py_False;
    Py_INCREF(broken);
    PyTuple_SET_ITEM(item, 5, broken);
    if (!failed)
        failed = PyList_Append((PyObject *)ctx, item) != 0;
    Py_DECREF(item);
    return failed;
}

static PyObject *decode_trades(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *trades = PyList_New(0);
    PyObject *result = NULL;
    if (trades != NULL) {
        const char *symbol;
        size_t symbol_len;
        uw_error error;
        int status = uw_parse_batch((const uint8_t *)view.buf, (size_t)view.len, &symbol,
                                    &symbol_len, append_trade, trades, &error);
        if (status == -1)
            PyErr_Format(PyExc_ValueError, "not an EventBatch: %s at byte %zu of %zd",
                         error.message, error.offset, view.len);
        else if (status == 0) {
            /* uw_parse_batch checked the symbol is UTF-8; the copy must be made before
             * the buffer is released. */
            PyObject *name = PyUnicode_DecodeUTF8(symbol, (Py_ssize_t)symbol_len, "strict");
            if (name != NULL)
                result = PyTuple_Pack(2, name, trades);
            Py_XDECREF(name);
        }
        Py_DECREF(trades);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef module_methods[] = {
    {"decode_trades", decode_trades, METH_O,
     "decode_trades(buffer, /)\n--\n\n"
     "Parse an EventBatch (md.trades record value): (symbol, [(exchange_ts_ns, seq, price,\n"
     "size, match_number, broken)] of each event whose payload is a trade, in order).\n"
     "symbol is '' when absent; broken is kind == TRADE_KIND_BROKEN. ValueError on input\n"
     "the protobuf parser would reject (normalize/_fastcore/unwire.h)."},
    {"decode_framed", decode_framed, METH_O,
     "decode_framed(buffer, /)\n--\n\n"
     "Decode-only mode: parse every field of every complete frame in buffer (no books, no\n"
     "events). Returns (decoded, decode_errors, checksum, bytes_consumed)."},
    {"_layout_table", layout_table, METH_NOARGS,
     "_layout_table()\n--\n\n{type byte: (length, [(offset, size) of each Alpha field])}."},
    {"_encode_trade", (PyCFunction)(void (*)(void))encode_trade, METH_VARARGS | METH_KEYWORDS,
     "_encode_trade(**fields)\n--\n\nThe C encoder's bytes of a Trade (tests)."},
    {"_encode_quote", (PyCFunction)(void (*)(void))encode_quote, METH_VARARGS | METH_KEYWORDS,
     "_encode_quote(**fields)\n--\n\nThe C encoder's bytes of a Quote (tests)."},
    {"_encode_status", (PyCFunction)(void (*)(void))encode_status, METH_VARARGS | METH_KEYWORDS,
     "_encode_status(**fields)\n--\n\nThe C encoder's bytes of a Status (tests)."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &FastNormalizer_spec, NULL);
    if (type == NULL)
        return -1;
    int result = PyModule_AddType(module, (PyTypeObject *)type);
    Py_DECREF(type);
    return result;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef fastcore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "normalize._fastcore",
    .m_doc = "The compiled ITCH 5.0 normalizer core (see normalize.fast).",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__fastcore(void) { return PyModuleDef_Init(&fastcore_module); }
