/* MD5 of many buffers at once: one SIMD lane per buffer (multi-buffer MD5).
 *
 * MD5 is a chain: one buffer cannot be hashed in parallel, but the parts of a multipart upload are
 * independent buffers, and 16 of them advance together in the 16 32-bit lanes of a 512-bit register.
 * The rounds are RFC 1321's, written once over GCC vector types; ``target_clones`` compiles them for
 * AVX-512 (rotate and three-input logic are single instructions there), AVX2 and the baseline, and
 * the loader picks the best the CPU has. Python calls ``md5_spans(spans)``: the digest of each
 * (fd, start, end) — spans of one file or of several — read with pread 32 KiB per lane at a time (bounded memory; a file mapped
 * instead would count in the process's RSS and die of SIGBUS if truncated), with the GIL released.
 * A span (fd, start, end, state, prior, last) is a piece of a longer message: it starts from the state a
 * previous piece gave back, after ``prior`` bytes, and gives back its own state unless it is the last.
 * In place of the fd, a span may name a buffer (bytes still in memory): its bytes [start, end) are hashed
 * where they are.
 * modelpvc.core.md5_native checks it against hashlib before use.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#define LANES 16
typedef uint32_t vec __attribute__((vector_size(4 * LANES)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/* One lane's input for one pass: ``full`` 64-byte blocks at ``data``, then ``ntail`` blocks of ``tail``
 * (after its last bytes: the partial block, the 0x80 byte and the bit length, as RFC 1321 pads). A lane
 * with neither is idle: it runs on zeros and its state is not changed. */
typedef struct {
    const uint8_t *data;
    size_t full;
    uint8_t tail[128];
    size_t ntail;
} lane_t;

static const uint8_t idle_block[64];

static inline const uint8_t *block_at(const lane_t *l, size_t k) {
    if (k < l->full) return l->data + 64 * k;
    if (k < l->full + l->ntail) return l->tail + 64 * (k - l->full);
    return NULL;
}

#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define STEP(f, a, b, c, d, i, s) a = b + ROTL(a + (f) + w[i] + K[step], s); step++
#define F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define G(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define H(b, c, d) ((b) ^ (c) ^ (d))
#define I(b, c, d) ((c) ^ ((b) | ~(d)))

/* 16 x 16 words: row j becomes column j. Four stages; stage b swaps bit b of the row index with bit b
 * of the word index, two-input shuffles of row pairs (j, j + 2^b). */
static inline __attribute__((always_inline)) void transpose(vec r[16]) {
    static const vec lo[4] = {
        {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
        {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
        {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
        {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
    };
    static const vec hi[4] = {
        {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31},
        {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
        {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
        {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
    };
#define STAGE(b)                                                        \
    for (int j = 0; j < 16; j++) {                                      \
        if (j & (1 << (b))) continue;                                   \
        vec x = r[j], y = r[j | (1 << (b))];                            \
        r[j] = __builtin_shuffle(x, y, lo[b]);                          \
        r[j | (1 << (b))] = __builtin_shuffle(x, y, hi[b]);             \
    }
    STAGE(0) STAGE(1) STAGE(2) STAGE(3)
#undef STAGE
}

/* One 64-byte block of every lane: ``w[i]`` is word i of each lane's block; lanes outside ``live`` are
 * left as they were. */
static inline __attribute__((always_inline)) void compress(vec st[4], const vec w[16], const vec *live) {
    vec a = st[0], b = st[1], c = st[2], d = st[3];
    int step = 0;
    STEP(F(b, c, d), a, b, c, d, 0, 7);   STEP(F(a, b, c), d, a, b, c, 1, 12);
    STEP(F(d, a, b), c, d, a, b, 2, 17);  STEP(F(c, d, a), b, c, d, a, 3, 22);
    STEP(F(b, c, d), a, b, c, d, 4, 7);   STEP(F(a, b, c), d, a, b, c, 5, 12);
    STEP(F(d, a, b), c, d, a, b, 6, 17);  STEP(F(c, d, a), b, c, d, a, 7, 22);
    STEP(F(b, c, d), a, b, c, d, 8, 7);   STEP(F(a, b, c), d, a, b, c, 9, 12);
    STEP(F(d, a, b), c, d, a, b, 10, 17); STEP(F(c, d, a), b, c, d, a, 11, 22);
    STEP(F(b, c, d), a, b, c, d, 12, 7);  STEP(F(a, b, c), d, a, b, c, 13, 12);
    STEP(F(d, a, b), c, d, a, b, 14, 17); STEP(F(c, d, a), b, c, d, a, 15, 22);
    STEP(G(b, c, d), a, b, c, d, 1, 5);   STEP(G(a, b, c), d, a, b, c, 6, 9);
    STEP(G(d, a, b), c, d, a, b, 11, 14); STEP(G(c, d, a), b, c, d, a, 0, 20);
    STEP(G(b, c, d), a, b, c, d, 5, 5);   STEP(G(a, b, c), d, a, b, c, 10, 9);
    STEP(G(d, a, b), c, d, a, b, 15, 14); STEP(G(c, d, a), b, c, d, a, 4, 20);
    STEP(G(b, c, d), a, b, c, d, 9, 5);   STEP(G(a, b, c), d, a, b, c, 14, 9);
    STEP(G(d, a, b), c, d, a, b, 3, 14);  STEP(G(c, d, a), b, c, d, a, 8, 20);
    STEP(G(b, c, d), a, b, c, d, 13, 5);  STEP(G(a, b, c), d, a, b, c, 2, 9);
    STEP(G(d, a, b), c, d, a, b, 7, 14);  STEP(G(c, d, a), b, c, d, a, 12, 20);
    STEP(H(b, c, d), a, b, c, d, 5, 4);   STEP(H(a, b, c), d, a, b, c, 8, 11);
    STEP(H(d, a, b), c, d, a, b, 11, 16); STEP(H(c, d, a), b, c, d, a, 14, 23);
    STEP(H(b, c, d), a, b, c, d, 1, 4);   STEP(H(a, b, c), d, a, b, c, 4, 11);
    STEP(H(d, a, b), c, d, a, b, 7, 16);  STEP(H(c, d, a), b, c, d, a, 10, 23);
    STEP(H(b, c, d), a, b, c, d, 13, 4);  STEP(H(a, b, c), d, a, b, c, 0, 11);
    STEP(H(d, a, b), c, d, a, b, 3, 16);  STEP(H(c, d, a), b, c, d, a, 6, 23);
    STEP(H(b, c, d), a, b, c, d, 9, 4);   STEP(H(a, b, c), d, a, b, c, 12, 11);
    STEP(H(d, a, b), c, d, a, b, 15, 16); STEP(H(c, d, a), b, c, d, a, 2, 23);
    STEP(I(b, c, d), a, b, c, d, 0, 6);   STEP(I(a, b, c), d, a, b, c, 7, 10);
    STEP(I(d, a, b), c, d, a, b, 14, 15); STEP(I(c, d, a), b, c, d, a, 5, 21);
    STEP(I(b, c, d), a, b, c, d, 12, 6);  STEP(I(a, b, c), d, a, b, c, 3, 10);
    STEP(I(d, a, b), c, d, a, b, 10, 15); STEP(I(c, d, a), b, c, d, a, 1, 21);
    STEP(I(b, c, d), a, b, c, d, 8, 6);   STEP(I(a, b, c), d, a, b, c, 15, 10);
    STEP(I(d, a, b), c, d, a, b, 6, 15);  STEP(I(c, d, a), b, c, d, a, 13, 21);
    STEP(I(b, c, d), a, b, c, d, 4, 6);   STEP(I(a, b, c), d, a, b, c, 11, 10);
    STEP(I(d, a, b), c, d, a, b, 2, 15);  STEP(I(c, d, a), b, c, d, a, 9, 21);
    st[0] += a & *live; st[1] += b & *live; st[2] += c & *live; st[3] += d & *live;
}

/* Advance every lane of ``state`` through its blocks; a lane with fewer blocks than the longest stops
 * changing. The blocks all lanes have in ``data`` are loaded straight from there: asking each lane where
 * its block is (``block_at``) cost 15 % (16 lanes of 4 MiB: 5.1-5.3 against 6.1-6.3 GB/s on this VM). */
CLONES static void md5_lanes(uint32_t state[4][LANES], const lane_t *lanes, int n) {
    vec st[4], live = {0};
    const uint8_t *at[LANES];
    size_t rounds = 0, common = n ? SIZE_MAX : 0;
    for (int r = 0; r < 4; r++) memcpy(&st[r], state[r], sizeof(vec));
    for (int j = 0; j < LANES; j++) {
        at[j] = j < n ? lanes[j].data : idle_block;
        if (j >= n) continue;
        live[j] = 0xffffffffu;
        if (lanes[j].full < common) common = lanes[j].full;
        if (lanes[j].full + lanes[j].ntail > rounds) rounds = lanes[j].full + lanes[j].ntail;
    }
    for (size_t k = 0; k < common; k++) {
        vec w[16];
        for (int j = 0; j < LANES; j++) /* lane j's block: words little-endian (x86) */
            memcpy(&w[j], at[j] + (j < n ? 64 * k : 0), sizeof(vec));
        transpose(w);
        compress(st, w, &live);
    }
    for (size_t k = common; k < rounds; k++) {
        vec w[16], some;
        for (int j = 0; j < LANES; j++) {
            const uint8_t *p = j < n ? block_at(&lanes[j], k) : NULL;
            some[j] = p ? 0xffffffffu : 0;
            memcpy(&w[j], p ? p : idle_block, sizeof(vec));
        }
        transpose(w);
        compress(st, w, &some);
    }
    for (int r = 0; r < 4; r++) memcpy(state[r], &st[r], sizeof(vec));
}

/* ``len`` bytes of a span at ``data``; ``total`` is the span's length when these are its last bytes, else
 * ``len`` is a multiple of 64 and ``total`` is ignored. */
static void lane_set(lane_t *l, const uint8_t *data, size_t len, int last, uint64_t total) {
    l->data = data;
    l->full = len / 64;
    l->ntail = 0;
    if (!last) return;
    size_t rest = len % 64;
    uint64_t bits = total * 8;
    memset(l->tail, 0, sizeof l->tail);
    memcpy(l->tail, data + 64 * l->full, rest);
    l->tail[rest] = 0x80;
    l->ntail = rest < 56 ? 1 : 2;
    for (int i = 0; i < 8; i++) l->tail[64 * l->ntail - 8 + i] = (uint8_t)(bits >> (8 * i));
}

/* Read exactly ``len`` bytes at ``*pos``, advancing it: 0, or an errno (-1: the file ends first). */
static int read_fully(int fd, uint8_t *buf, size_t len, uint64_t *pos) {
    while (len) {
        ssize_t got = pread(fd, buf, len, (off_t)*pos);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (got == 0) return -1;
        buf += got;
        len -= (size_t)got;
        *pos += (uint64_t)got;
    }
    return 0;
}

#define CHUNK (32 * 1024) /* per lane and pass: 16 lanes read into 512 KiB, in L2 (measured: 16-64 KiB equal, 256 KiB -12 %) */

/* One span of a file to hash: a whole message, or a piece of one (``prior`` bytes already hashed into
 * ``init``; a piece that is not ``last`` is whole 64-byte blocks and gives back the state, unpadded). */
typedef struct {
    int fd;
    const uint8_t *mem; /* a buffer's bytes instead of the fd's, or NULL */
    uint64_t start, end;
    uint32_t init[4];
    uint64_t prior;
    int last;
} span_t;

/* The MD5 of each span, ``LANES`` spans at a time, each read through its own CHUNK of ``buf``. */
static int hash_spans(const span_t *spans, Py_ssize_t n, uint8_t (*out)[16], uint8_t *buf, lane_t *lanes,
                      uint64_t *failed_at) {
    for (Py_ssize_t first = 0; first < n; first += LANES) {
        int count = (int)(n - first < LANES ? n - first : LANES);
        uint32_t state[4][LANES];
        uint64_t pos[LANES];
        int finished[LANES] = {0};
        for (int j = 0; j < LANES; j++)
            for (int r = 0; r < 4; r++) state[r][j] = j < count ? spans[first + j].init[r] : 0;
        for (int j = 0; j < count; j++) pos[j] = spans[first + j].start;
        for (;;) {
            int busy = 0;
            for (int j = 0; j < count; j++) {
                const span_t *sp = &spans[first + j];
                lanes[j].full = lanes[j].ntail = 0;
                if (finished[j]) continue;
                size_t take = sp->end - pos[j] < CHUNK ? (size_t)(sp->end - pos[j]) : CHUNK;
                const uint8_t *mine;
                if (sp->mem) {
                    mine = sp->mem + pos[j];
                    pos[j] += take;
                } else {
                    uint8_t *into = buf + (size_t)j * CHUNK;
                    int err = read_fully(sp->fd, into, take, &pos[j]);
                    if (err) {
                        *failed_at = pos[j];
                        return err;
                    }
                    mine = into;
                }
                finished[j] = pos[j] == sp->end;
                lane_set(&lanes[j], mine, take, finished[j] && sp->last, sp->prior + (sp->end - sp->start));
                busy = 1;
            }
            if (!busy) break;
            md5_lanes(state, lanes, count);
        }
        for (int j = 0; j < count; j++)
            for (int r = 0; r < 4; r++) memcpy(out[first + j] + 4 * r, &state[r][j], 4);
    }
    return 0;
}

static PyObject *md5_spans(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "md5_spans takes a sequence of (fd or buffer, start, end[, state, prior, last])");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), held = 0;
    span_t *spans = PyMem_Malloc((n ? (size_t)n : 1) * sizeof *spans);
    Py_buffer *views = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer)); /* the buffers named, held */
    uint8_t (*digests)[16] = PyMem_Malloc((n ? (size_t)n : 1) * 16);
    uint8_t *buf = PyMem_Malloc((size_t)LANES * CHUNK);
    lane_t *lanes = PyMem_Malloc(LANES * sizeof(lane_t));
    PyObject *result = NULL;
    int err = 0;
    uint64_t failed_at = 0;
    if (!spans || !digests || !buf || !lanes || !views) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd = -1, last = 1;
        PyObject *where;
        unsigned long long start, end, prior = 0;
        const char *init = NULL;
        Py_ssize_t init_len = 16;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OKK|z#Kp:span", &where, &start, &end, &init,
                              &init_len, &prior, &last))
            goto done;
        spans[i].mem = NULL;
        if (PyLong_Check(where)) {
            long v = PyLong_AsLong(where);
            if (v == -1 && PyErr_Occurred()) goto done;
            if (v < 0 || v > INT32_MAX) {
                PyErr_Format(PyExc_ValueError, "%ld is not a file descriptor", v);
                goto done;
            }
            fd = (int)v;
        } else {
            if (PyObject_GetBuffer(where, &views[held], PyBUF_SIMPLE) < 0) goto done;
            spans[i].mem = views[held++].buf;
            if (end > (unsigned long long)views[held - 1].len) {
                PyErr_Format(PyExc_ValueError, "span %llu-%llu is outside its %zd-byte buffer", start, end,
                             views[held - 1].len);
                goto done;
            }
        }
        if (end < start) {
            PyErr_Format(PyExc_ValueError, "span %llu-%llu ends before it starts", start, end);
            goto done;
        }
        if ((init && init_len != 16) || (!init && prior) || prior % 64 || (!last && (end - start) % 64)) {
            PyErr_SetString(PyExc_ValueError, "a piece resumes a 16-byte state after whole 64-byte blocks");
            goto done;
        }
        spans[i].fd = fd;
        spans[i].start = start;
        spans[i].end = end;
        spans[i].prior = prior;
        spans[i].last = last;
        static const uint32_t iv[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
        if (init)
            memcpy(spans[i].init, init, 16); /* the state's words, little-endian as the digest's (x86) */
        else
            memcpy(spans[i].init, iv, 16);
    }
    Py_BEGIN_ALLOW_THREADS
    err = hash_spans(spans, n, digests, buf, lanes, &failed_at);
    Py_END_ALLOW_THREADS
    if (err == -1) {
        PyErr_Format(PyExc_OSError, "short read at %llu: the file ends before the span does",
                     (unsigned long long)failed_at);
        goto done;
    }
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyList_New(n);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyBytes_FromStringAndSize((const char *)digests[i], 16);
        if (!d) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, d);
    }
done:
    for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(spans);
    PyMem_Free(digests);
    PyMem_Free(buf);
    PyMem_Free(lanes);
    Py_DECREF(seq);
    return result;
}

static PyObject *isa(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return PyUnicode_FromString("avx512f");
    if (__builtin_cpu_supports("avx2")) return PyUnicode_FromString("avx2");
#endif
    return PyUnicode_FromString("default");
}

static PyMethodDef methods[] = {
    {"md5_spans", md5_spans, METH_O,
     "md5_spans([(fd or buffer, start, end), ...]) -> the 16-byte MD5 of each span (an fd's read with pread)."},
    {"isa", isa, METH_NOARGS, "The instruction set the lanes run on: avx512f, avx2 or default."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5lanes", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__md5lanes(void) { return PyModule_Create(&module); }
