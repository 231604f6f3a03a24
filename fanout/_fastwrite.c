/* fanout._fastwrite: the fanout's direct path for one chunk of a pulled tick, in C.
 *
 * FanoutServer._flush serves every client of a busy tick: read its share of the tick with
 * its getter, join the JSON fragments into one text frame, write the frame to the client's
 * transport, and note the frame's publish-to-send delay. At 10,000 clients and five ticks a
 * second that loop's Python overhead was about a third of the server's core; this is the
 * same loop for the clients that take the direct path, one C call per chunk.
 *
 * write_direct(work, getters, entries, batch_max, state_open, base_ns)
 *     -> (frames, payload_bytes, messages, rest, delays_ns)
 *
 * work       list of (client, getter) pairs (fanout.server._Client, captured getter or None)
 * getters    the tier's current getters (_Routes.getters): a client whose getter changed
 *            since routing (it subscribed or unsubscribed) is not on the direct path
 * entries    the tick's _PullTable.entries: by slot, None (no update) or the pair (the
 *            update's JSON fragment as bytes, its publish time in ns after base_ns as a
 *            float; inf when unknown); one getter call reads both
 *
 * A client is written here only if it is caught up, exactly the conditions of the Python
 * path: no pushed share pending, not evicted, empty outbox, relay not sending, transport not
 * paused, protocol state OPEN, same getter, at most batch_max messages. Every other client
 * is returned in `rest`, in order, for the Python path; a client with nothing this tick is
 * skipped. A write that raises (the connection is going away) is dropped, as in Python.
 * Each frame written adds its count to client.outbox.stats.sent and one delay to delays_ns
 * (CLOCK_REALTIME now minus the oldest publish time of its messages, as time.time_ns()). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Attribute names, interned once (module exec). */
static PyObject *s_pending, *s_evicted, *s_outbox, *s_waiting, *s_sending, *s_ws, *s_paused,
    *s_protocol, *s_state, *s_transport, *s_write, *s_stats, *s_sent;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 1 when attribute `name` of `obj` is true, 0 when false, -1 on error. */
static int attr_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* 1 when `client` may be written directly with `getter`, 0 when not, -1 on error. Sets
 * *ws_out (new reference) when 1. */
static int caught_up(PyObject *client, PyObject *getter, PyObject *getters, PyObject *state_open,
                     PyObject **ws_out)
{
    int t;
    if ((t = attr_true(client, s_pending)) != 0 || (t = attr_true(client, s_evicted)) != 0 ||
        (t = attr_true(client, s_sending)) != 0)
        return t < 0 ? -1 : 0;
    PyObject *outbox = PyObject_GetAttr(client, s_outbox);
    if (outbox == NULL)
        return -1;
    t = attr_true(outbox, s_waiting);
    Py_DECREF(outbox);
    if (t != 0)
        return t < 0 ? -1 : 0;
    PyObject *current = PyDict_GetItemWithError(getters, client); /* borrowed */
    if (current != getter)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *ws = PyObject_GetAttr(client, s_ws);
    if (ws == NULL)
        return -1;
    if ((t = attr_true(ws, s_paused)) != 0) {
        Py_DECREF(ws);
        return t < 0 ? -1 : 0;
    }
    PyObject *protocol = PyObject_GetAttr(ws, s_protocol);
    if (protocol == NULL) {
        Py_DECREF(ws);
        return -1;
    }
    PyObject *state = PyObject_GetAttr(protocol, s_state);
    Py_DECREF(protocol);
    if (state == NULL) {
        Py_DECREF(ws);
        return -1;
    }
    int open = state == state_open;
    Py_DECREF(state);
    if (!open) {
        Py_DECREF(ws);
        return 0;
    }
    *ws_out = ws;
    return 1;
}

/* The frame of a client's `entries` (None, or a (fragment bytes, publish float) pair, None
 * skipped): header, "[", fragments joined by ",", "]". Returns a new bytes object, or NULL
 * with *count 0 when there is nothing to send (no error set), or NULL with an error.
 * *payload is the payload length (without the header), *oldest the smallest publish time
 * (inf when none). */
static PyObject *build_frame(PyObject *const *entries, Py_ssize_t n, Py_ssize_t *count,
                             Py_ssize_t *payload, double *oldest)
{
    Py_ssize_t size = 0, k = 0;
    double best = INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = entries[i];
        if (entry == Py_None)
            continue;
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(entry, 0)) ||
            !PyFloat_CheckExact(PyTuple_GET_ITEM(entry, 1))) {
            PyErr_SetString(PyExc_TypeError,
                            "write_direct: entries must be None or (bytes, float) pairs");
            return NULL;
        }
        size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 0));
        double t = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 1));
        if (t < best)
            best = t;
        k++;
    }
    *count = k;
    *oldest = best;
    if (k == 0)
        return NULL;
    Py_ssize_t length = size + (k - 1) + 2; /* commas, brackets */
    Py_ssize_t header = length < 126 ? 2 : length < 65536 ? 4 : 10;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, header + length);
    if (frame == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    /* RFC 6455 5.2: FIN + text opcode, unmasked, 7-bit / 16-bit / 64-bit length. */
    out[0] = 0x81;
    if (header == 2) {
        out[1] = (unsigned char)length;
    } else if (header == 4) {
        out[1] = 126;
        out[2] = (unsigned char)(length >> 8);
        out[3] = (unsigned char)length;
    } else {
        out[1] = 127;
        for (int b = 0; b < 8; b++)
            out[2 + b] = (unsigned char)((uint64_t)length >> (56 - 8 * b));
    }
    unsigned char *p = out + header;
    *p++ = '[';
    int first = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (entries[i] == Py_None)
            continue;
        if (!first)
            *p++ = ',';
        first = 0;
        PyObject *fragment = PyTuple_GET_ITEM(entries[i], 0);
        Py_ssize_t len = PyBytes_GET_SIZE(fragment);
        memcpy(p, PyBytes_AS_STRING(fragment), (size_t)len);
        p += len;
    }
    *p = ']';
    *payload = length;
    return frame;
}

static int add_sent(PyObject *client, Py_ssize_t count)
{
    PyObject *outbox = PyObject_GetAttr(client, s_outbox);
    if (outbox == NULL)
        return -1;
    PyObject *stats = PyObject_GetAttr(outbox, s_stats);
    Py_DECREF(outbox);
    if (stats == NULL)
        return -1;
    PyObject *sent = PyObject_GetAttr(stats, s_sent);
    if (sent == NULL) {
        Py_DECREF(stats);
        return -1;
    }
    PyObject *more = PyLong_FromSsize_t(count);
    PyObject *total = more == NULL ? NULL : PyNumber_Add(sent, more);
    Py_DECREF(sent);
    Py_XDECREF(more);
    int rc = total == NULL ? -1 : PyObject_SetAttr(stats, s_sent, total);
    Py_XDECREF(total);
    Py_DECREF(stats);
    return rc;
}

static PyObject *write_direct(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "write_direct() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *work = args[0], *getters = args[1], *entries = args[2];
    Py_ssize_t batch_max = PyLong_AsSsize_t(args[3]);
    PyObject *state_open = args[4];
    int64_t base_ns = PyLong_AsLongLong(args[5]);
    if ((batch_max == -1 && PyErr_Occurred()) || (base_ns == -1 && PyErr_Occurred()))
        return NULL;
    if (!PyList_Check(work) || !PyDict_Check(getters)) {
        PyErr_SetString(PyExc_TypeError, "write_direct: work must be a list, getters a dict");
        return NULL;
    }
    Py_ssize_t frames = 0, payload_total = 0, messages = 0;
    PyObject *rest = PyList_New(0), *delays = PyList_New(0);
    if (rest == NULL || delays == NULL)
        goto error;
    Py_ssize_t n = PyList_GET_SIZE(work);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(work, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "write_direct: work items are (client, getter)");
            goto error;
        }
        PyObject *client = PyTuple_GET_ITEM(item, 0), *getter = PyTuple_GET_ITEM(item, 1);
        PyObject *ws = NULL;
        int ok = getter == Py_None ? 0 : caught_up(client, getter, getters, state_open, &ws);
        if (ok < 0)
            goto error;
        if (ok == 0) {
            if (PyList_Append(rest, item) < 0)
                goto error;
            continue;
        }
        PyObject *parts = PyObject_CallOneArg(getter, entries);
        PyObject *seq = parts == NULL
                            ? NULL
                            : PySequence_Fast(parts, "write_direct: a getter must return a sequence");
        Py_XDECREF(parts);
        if (seq == NULL) {
            Py_DECREF(ws);
            goto error;
        }
        Py_ssize_t count = 0, payload = 0;
        double oldest;
        PyObject *frame = build_frame(PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq),
                                      &count, &payload, &oldest);
        Py_DECREF(seq);
        if (frame == NULL) {
            Py_DECREF(ws);
            if (PyErr_Occurred())
                goto error;
            continue; /* nothing for this client this tick */
        }
        if (count > batch_max) { /* several frames: the Python path splits them */
            Py_DECREF(frame);
            Py_DECREF(ws);
            if (PyList_Append(rest, item) < 0)
                goto error;
            continue;
        }
        PyObject *transport = PyObject_GetAttr(ws, s_transport);
        Py_DECREF(ws);
        if (transport == NULL) {
            Py_DECREF(frame);
            goto error;
        }
        PyObject *written = PyObject_CallMethodOneArg(transport, s_write, frame);
        Py_DECREF(transport);
        Py_DECREF(frame);
        if (written == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                goto error; /* KeyboardInterrupt, SystemExit: not ours to swallow */
            PyErr_Clear(); /* the connection is going away: as the Python path does */
            continue;
        }
        Py_DECREF(written);
        frames++;
        payload_total += payload;
        messages += count;
        if (add_sent(client, count) < 0)
            goto error;
        if (isfinite(oldest)) {
            PyObject *delay = PyLong_FromLongLong(now_ns() - base_ns - (int64_t)oldest);
            if (delay == NULL || PyList_Append(delays, delay) < 0) {
                Py_XDECREF(delay);
                goto error;
            }
            Py_DECREF(delay);
        }
    }
    return Py_BuildValue("nnnNN", frames, payload_total, messages, rest, delays);
error:
    Py_XDECREF(rest);
    Py_XDECREF(delays);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"write_direct", (PyCFunction)(void (*)(void))write_direct, METH_FASTCALL,
     "write_direct(work, getters, entries, batch_max, state_open, base_ns)"
     " -> (frames, payload_bytes, messages, rest, delays_ns): see the module source."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
    (void)module;
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&s_pending, "pending"},     {&s_evicted, "evicted"},   {&s_outbox, "outbox"},
        {&s_waiting, "waiting"},     {&s_sending, "sending"},   {&s_ws, "ws"},
        {&s_paused, "paused"},       {&s_protocol, "protocol"}, {&s_state, "state"},
        {&s_transport, "transport"}, {&s_write, "write"},       {&s_stats, "stats"},
        {&s_sent, "sent"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef fastwrite_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fanout._fastwrite",
    .m_doc = "The fanout's direct write path for a pulled tick (see fanout.server._flush).",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__fastwrite(void) { return PyModuleDef_Init(&fastwrite_module); }
