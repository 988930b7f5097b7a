# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
# distutils: language = c++
"""Compiled integrator of the virtual chip (see :mod:`cysim.engine` for the equations).

One call integrates a batch of independent trials of one configuration. Trials run in
parallel (OpenMP) on separate state; every trial owns its random streams, so a trial's
result does not depend on the batch it ran in or on the thread that ran it.
"""

from cython.parallel cimport prange
from libc.math cimport exp, log, llround, floor
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset
from libcpp.vector cimport vector

import numpy as np

cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #define CYSIM_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CYSIM_CLONES
    #endif
    #define R __restrict__

    /* Exact step of the linear part for all circuits (leak, decaying synaptic currents,
       constant bias current); the synaptic currents decay in place. */
    CYSIM_CLONES static void cysim_linear_step(
        int n, const double* R e_l, const double* R p_mem, const double* R p_vexc,
        const double* R p_vinh, const double* R p_vconst, const double* R i_bias,
        const double* R p_exc, const double* R p_inh, const double* R v,
        double* R ie, double* R ii, double* R vnew)
    {
        #pragma omp simd
        for (int i = 0; i < n; ++i) {
            vnew[i] = e_l[i] + (v[i] - e_l[i]) * p_mem[i] + ie[i] * p_vexc[i]
                      - ii[i] * p_vinh[i] + i_bias[i] * p_vconst[i];
            ie[i] *= p_exc[i];
            ii[i] *= p_inh[i];
        }
    }

    /* Gaussian noise: one xorshift32 stream per circuit; two draws give four 16-bit
       uniforms whose sum approximates a standard normal (Irwin-Hall, support +-3.46). */
    #pragma omp declare simd linear(state:1) notinbranch
    static inline double cysim_gauss(uint32_t* R state)
    {
        uint32_t x = *state;
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        uint32_t y = x;
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        *state = x;
        double u = (double)(y & 0xFFFFu) + (double)(y >> 16)
                   + (double)(x & 0xFFFFu) + (double)(x >> 16);
        return (u - 131070.0) * (1.0 / 37837.2);
    }

    /* Membrane noise of the integrated circuits. */
    CYSIM_CLONES static void cysim_noise_step(
        int n, uint32_t* R state, const double* R sigma, double* R vnew)
    {
        #pragma omp simd
        for (int i = 0; i < n; ++i) vnew[i] += sigma[i] * cysim_gauss(state + i);
    }

    /* One CADC sample of all circuits: passive circuits advance their exact
       Ornstein-Uhlenbeck process to this sample; every channel applies its gain, offset
       and readout noise, rounds and saturates to 8 bit, in global circuit order. `buf`
       holds n_total doubles of scratch space. */
    CYSIM_CLONES static void cysim_cadc_sample(
        int n_total, int n, const double* R v, double* R vq, const double* R e_l,
        const double* R rho, const double* R psig, int advance, const double* R gain,
        const double* R offset, double noise, uint32_t* R state, const int64_t* R order,
        double* R buf, uint8_t* R out)
    {
        int np = n_total - n;
        if (advance) {
            #pragma omp simd
            for (int j = 0; j < np; ++j)
                vq[j] = e_l[n + j] + (vq[j] - e_l[n + j]) * rho[n + j]
                        + psig[n + j] * cysim_gauss(state + n + j);
        }
        for (int j = 0; j < n; ++j) buf[j] = v[j];
        for (int j = 0; j < np; ++j) buf[n + j] = vq[j];
        #pragma omp simd
        for (int j = 0; j < n_total; ++j) {
            double x = buf[j] * gain[j] + offset[j] + noise * cysim_gauss(state + j);
            x = x < 0.0 ? 0.0 : (x > 255.0 ? 255.0 : x);
            buf[j] = x + 0.5;
        }
        for (int j = 0; j < n_total; ++j) out[order[j]] = (uint8_t)buf[j];
    }

    /* Rails, refractory clamp and threshold comparison, branch-free (vectorised); the
       refractory counters are kept as doubles so every lane is a double. Spiking circuits
       are then listed in `spiked` with the fraction of the step at which V crossed the
       threshold; their reset is applied by the caller. Returns the number of spikes. */
    CYSIM_CLONES static int cysim_threshold_step(
        int n, const double* R v_reset, const double* R v_th, const double* R spike_en,
        double rail, double* R ref, const double* R v, double* R vnew, int32_t* R spiked,
        double* R frac)
    {
        double hits = 0.0;
        for (int i = 0; i < n; ++i) {
            double vn = vnew[i];
            vn = vn < 0.0 ? 0.0 : (vn > rail ? rail : vn);
            double r = ref[i];
            int in_ref = r > 0.0;
            ref[i] = in_ref ? r - 1.0 : r;
            vn = in_ref ? v_reset[i] : vn;
            double hit = (!in_ref && vn >= v_th[i]) ? spike_en[i] : 0.0;
            frac[i] = hit;  /* scratch: hit mask, compacted below */
            hits += hit;
            vnew[i] = vn;
        }
        if (hits == 0.0) return 0;
        int count = 0;
        for (int i = 0; i < n; ++i) {
            if (frac[i] != 0.0) {
                double vi = v[i], vn = vnew[i];
                double f = vn > vi ? (v_th[i] - vi) / (vn - vi) : 0.0;
                spiked[count] = i;
                frac[count] = f < 0.0 ? 0.0 : f;
                ++count;
            }
        }
        return count;
    }

    /* Events that arrive in this step: add the ring-buffer slot, then clear it. */
    CYSIM_CLONES static void cysim_add_clear(int n, double* R dst, double* R src)
    {
        #pragma omp simd
        for (int i = 0; i < n; ++i) { dst[i] += src[i]; src[i] = 0.0; }
    }
    """
    int cysim_threshold_step(int n, const double* v_reset, const double* v_th,
                             const double* spike_en, double rail, double* ref, const double* v,
                             double* vnew, int32_t* spiked, double* frac) noexcept nogil
    void cysim_add_clear(int n, double* dst, double* src) noexcept nogil
    void cysim_linear_step(int n, const double* e_l, const double* p_mem, const double* p_vexc,
                           const double* p_vinh, const double* p_vconst, const double* i_bias,
                           const double* p_exc, const double* p_inh, const double* v,
                           double* ie, double* ii, double* vnew) noexcept nogil
    void cysim_noise_step(int n, uint32_t* state, const double* sigma, double* vnew) noexcept nogil
    double cysim_gauss(uint32_t* state) noexcept nogil
    void cysim_cadc_sample(int n_total, int n, const double* v, double* vq, const double* e_l,
                           const double* rho, const double* psig, int advance, const double* gain,
                           const double* offset, double noise, uint32_t* state,
                           const int64_t* order, double* buf, uint8_t* out) noexcept nogil


cdef enum:
    F_SPIKE = 1
    F_EXP = 2
    F_ADAPT = 4
    F_COBA = 8
    NORMAL_BITS = 12
    NORMAL_TABLE = 4096

cdef struct Params:
    double dt
    int64_t n_steps
    int n
    double latency
    double rail
    int ring_len
    # per circuit
    const double* e_l
    const double* v_reset
    const double* v_th
    const double* v_t
    const double* delta_t
    const double* e_rev_e
    const double* e_rev_i
    const double* inv_tau_m
    const double* p_mem
    const double* p_vexc
    const double* p_vinh
    const double* p_vconst
    const double* p_exc
    const double* p_inh
    const double* f_exc
    const double* f_inh
    const double* p_w
    const double* a
    const double* b
    const double* i_bias
    const double* noise_step
    const double* ref_steps
    const uint8_t* flags
    const double* spike_en
    int n_special  # circuits with exponential term, adaptation or COBA input
    const int32_t* special
    int has_noise
    # routing
    const int64_t* key_ptr
    const int32_t* key_target
    const double* key_amp
    const int64_t* out_ptr
    const int32_t* out_keys
    # stimulus
    const int64_t* ev_ptr
    const int64_t* ev_step
    const int32_t* ev_key
    # background generators
    int n_bg
    const uint8_t* bg_mode
    const double* bg_period
    const int64_t* bg_ptr
    const int32_t* bg_keys
    const uint64_t* bg_seeds
    const uint64_t* noise_seeds
    const double* normal_table
    # passive circuits (no input; only read out) follow the n active ones
    int n_total
    const double* passive_rho
    const double* passive_sigma
    # readout gain/offset/noise per local circuit (LSB)
    const double* cadc_gain
    const double* cadc_offset
    double cadc_noise
    const double* madc_gain
    const double* madc_offset
    double madc_noise
    # readout
    int64_t n_cadc
    const int64_t* cadc_steps
    uint8_t* cadc_out
    const int64_t* order
    int n_madc
    const int32_t* madc_local
    int64_t n_madc_samples
    double madc_period
    uint16_t* madc_out


cdef struct Rng:
    uint64_t s0
    uint64_t s1
    uint64_t s2
    uint64_t s3
    uint64_t bits
    int nbits


cdef inline uint64_t _splitmix(uint64_t* x) noexcept nogil:
    x[0] += <uint64_t>0x9E3779B97F4A7C15
    cdef uint64_t z = x[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline void _seed(Rng* r, uint64_t seed) noexcept nogil:
    cdef uint64_t x = seed
    r.s0 = _splitmix(&x)
    r.s1 = _splitmix(&x)
    r.s2 = _splitmix(&x)
    r.s3 = _splitmix(&x)
    r.bits = 0
    r.nbits = 0


cdef inline uint64_t _next(Rng* r) noexcept nogil:
    # xoshiro256+
    cdef uint64_t result = r.s0 + r.s3
    cdef uint64_t t = r.s1 << 17
    r.s2 ^= r.s0
    r.s3 ^= r.s1
    r.s1 ^= r.s2
    r.s0 ^= r.s3
    r.s2 ^= t
    r.s3 = (r.s3 << 45) | (r.s3 >> 19)
    return result


cdef inline double _uniform(Rng* r) noexcept nogil:
    """Uniform in (0, 1]."""
    return ((_next(r) >> 11) + 1) * (1.0 / 9007199254740992.0)


cdef inline double _normal(Rng* r, const double* table) noexcept nogil:
    """Standard normal by inverse-CDF table lookup (4096 levels, unit variance)."""
    if r.nbits < NORMAL_BITS:
        r.bits = _next(r)
        r.nbits = 60
    cdef int idx = <int>(r.bits & (NORMAL_TABLE - 1))
    r.bits >>= NORMAL_BITS
    r.nbits -= NORMAL_BITS
    return table[idx]


cdef inline void _deliver(const Params* p, double* ring, int slot, int32_t key) noexcept nogil:
    cdef int64_t k
    cdef double* dst = ring + <int64_t>slot * 2 * p.n
    for k in range(p.key_ptr[key], p.key_ptr[key + 1]):
        dst[p.key_target[k]] += p.key_amp[k]


cdef int _run_trial(const Params* p, int64_t trial, vector[int32_t]* sp_circ_out,
                    vector[double]* sp_time_out) noexcept nogil:
    # spikes are collected locally and handed over at the end: vectors of neighbouring
    # trials share cache lines, and other threads write them
    cdef vector[int32_t] sp_circ_local
    cdef vector[double] sp_time_local
    cdef vector[int32_t]* sp_circ = &sp_circ_local
    cdef vector[double]* sp_time = &sp_time_local
    cdef int n = p.n
    cdef int L = p.ring_len
    cdef double dt = p.dt
    cdef int nn = n if n > 0 else 1
    cdef double* v = <double*>malloc(nn * sizeof(double))
    cdef double* vnew = <double*>malloc(nn * sizeof(double))
    cdef double* w = <double*>calloc(nn, sizeof(double))
    cdef double* syn = <double*>calloc(2 * nn, sizeof(double))  # [exc..., inh...]
    cdef double* ring = <double*>calloc(<int64_t>L * 2 * nn, sizeof(double))
    cdef double* ref = <double*>calloc(nn, sizeof(double))
    cdef double* cbuf = <double*>malloc(p.n_total * sizeof(double))
    cdef uint8_t* dirty = <uint8_t*>calloc(L, sizeof(uint8_t))
    cdef uint32_t* nstate = <uint32_t*>malloc(p.n_total * sizeof(uint32_t))
    cdef double* spec_v = <double*>malloc((p.n_special + 1) * sizeof(double))
    cdef double* bg_next = <double*>malloc((p.n_bg + 1) * sizeof(double))
    cdef Rng* bg_rng = <Rng*>malloc((p.n_bg + 1) * sizeof(Rng))
    cdef double* madc_prev = <double*>malloc((p.n_madc + 1) * sizeof(double))
    cdef double* vq = <double*>malloc((p.n_total - n + 1) * sizeof(double))
    cdef int32_t* spiked = <int32_t*>malloc(nn * sizeof(int32_t))
    cdef double* sfrac = <double*>malloc(nn * sizeof(double))
    cdef double* vbuf0 = v
    cdef double* vbuf1 = vnew
    cdef double* tmp
    cdef int n_spiked
    if cbuf == NULL or dirty == NULL or spiked == NULL or sfrac == NULL or v == NULL or vnew == NULL or w == NULL or syn == NULL or ring == NULL or ref == NULL \
            or nstate == NULL or spec_v == NULL or bg_next == NULL or bg_rng == NULL \
            or madc_prev == NULL or vq == NULL:
        free(v); free(vnew); free(w); free(syn); free(ring); free(ref); free(nstate); free(spec_v)
        free(bg_next); free(bg_rng); free(madc_prev); free(vq); free(spiked); free(sfrac)
        free(cbuf); free(dirty)
        return -1
    cdef double* ie = syn
    cdef double* ii = syn + n
    cdef Rng rng
    _seed(&rng, p.noise_seeds[trial])
    cdef int i, g, m, slot, j, s
    cdef int32_t key
    cdef int64_t step, k, arrival, ks
    cdef int64_t ev = p.ev_ptr[trial]
    cdef int64_t ev_end = p.ev_ptr[trial + 1]
    cdef int64_t cadc_next = 0
    cdef int64_t madc_next = 0
    cdef double t, t_end, vi, vn, icur, arg, ge, gi, gtot, vinf, frac, ts, tk
    cdef double* srow
    cdef uint8_t fl
    cdef uint64_t x
    cdef uint8_t* cadc_out = p.cadc_out + trial * p.n_cadc * p.n_total
    cdef uint16_t* madc_out = p.madc_out + trial * p.n_madc_samples * p.n_madc
    cdef double mval
    cdef double madc_sf[2]  # fraction of the step at which a MADC circuit spiked, or 2

    x = p.noise_seeds[trial] ^ <uint64_t>0x5DEECE66D
    for i in range(n):
        v[i] = p.e_l[i]
    for j in range(p.n_total):
        nstate[j] = <uint32_t>(_splitmix(&x) >> 32) | 1u
    for j in range(n, p.n_total):
        vq[j - n] = p.e_l[j]
    for g in range(p.n_bg):
        _seed(&bg_rng[g], p.bg_seeds[trial * p.n_bg + g])
        if p.bg_mode[g] == 1:
            bg_next[g] = -log(_uniform(&bg_rng[g])) * p.bg_period[g]
        else:
            bg_next[g] = p.bg_period[g]

    for step in range(p.n_steps):
        t = step * dt
        t_end = t + dt
        # --- events arriving now -------------------------------------------------------
        slot = <int>(step % L)
        if dirty[slot]:
            cysim_add_clear(2 * n, syn, ring + <int64_t>slot * 2 * n)
            dirty[slot] = 0
        while ev < ev_end and p.ev_step[ev] <= step:
            key = p.ev_key[ev]
            for k in range(p.key_ptr[key], p.key_ptr[key + 1]):
                syn[p.key_target[k]] += p.key_amp[k]
            ev += 1
        # --- background generators emit into the routing ------------------------------
        for g in range(p.n_bg):
            while p.bg_mode[g] != 0 and bg_next[g] < t_end:
                arrival = llround((bg_next[g] + p.latency) / dt)
                if arrival <= step:
                    arrival = step + 1
                for ks in range(p.bg_ptr[g], p.bg_ptr[g + 1]):
                    _deliver(p, ring, <int>(arrival % L), p.bg_keys[ks])
                dirty[arrival % L] = 1
                if p.bg_mode[g] == 1:
                    bg_next[g] += -log(_uniform(&bg_rng[g])) * p.bg_period[g]
                else:
                    bg_next[g] += p.bg_period[g]
        # --- CADC samples the state at t ----------------------------------------------
        if cadc_next < p.n_cadc and p.cadc_steps[cadc_next] == step:
            cysim_cadc_sample(p.n_total, n, v, vq, p.e_l, p.passive_rho, p.passive_sigma,
                              cadc_next > 0, p.cadc_gain, p.cadc_offset, p.cadc_noise, nstate,
                              p.order, cbuf, cadc_out + cadc_next * p.n_total)
            cadc_next += 1
        for m in range(p.n_madc):
            madc_prev[m] = v[p.madc_local[m]]
        madc_sf[0] = 2.0
        madc_sf[1] = 2.0
        # --- nonlinear circuits (exponential term, adaptation, COBA): exponential Euler -
        for s in range(p.n_special):
            i = p.special[s]
            fl = p.flags[i]
            vi = v[i]
            icur = p.i_bias[i]
            if fl & F_EXP:
                arg = (vi - p.v_t[i]) / p.delta_t[i]
                if arg > -40.0:
                    if arg > 30.0:
                        arg = 30.0
                    icur = icur + p.delta_t[i] * p.inv_tau_m[i] * exp(arg)
            if fl & F_ADAPT:
                icur = icur - w[i]
                w[i] = w[i] * p.p_w[i] + p.a[i] * (vi - p.e_l[i]) * (1.0 - p.p_w[i])
            if fl & F_COBA:
                ge = ie[i] * p.f_exc[i]
                gi = ii[i] * p.f_inh[i]
                gtot = p.inv_tau_m[i] + ge + gi
                vinf = (p.e_l[i] * p.inv_tau_m[i] + ge * p.e_rev_e[i] + gi * p.e_rev_i[i]
                        + icur) / gtot
                spec_v[s] = vinf + (vi - vinf) * exp(-dt * gtot)
            else:
                spec_v[s] = (p.e_l[i] + (vi - p.e_l[i]) * p.p_mem[i] + ie[i] * p.p_vexc[i]
                             - ii[i] * p.p_vinh[i] + icur * p.p_vconst[i])
        # --- linear circuits: exact propagation (vectorised kernel) ---------------------
        cysim_linear_step(n, p.e_l, p.p_mem, p.p_vexc, p.p_vinh, p.p_vconst, p.i_bias,
                          p.p_exc, p.p_inh, v, ie, ii, vnew)
        for s in range(p.n_special):
            vnew[p.special[s]] = spec_v[s]
        if p.has_noise:
            cysim_noise_step(n, nstate, p.noise_step, vnew)
        # --- refractory clamp, rails, threshold; reset and routing of the spikes -------
        n_spiked = cysim_threshold_step(n, p.v_reset, p.v_th, p.spike_en, p.rail, ref, v, vnew,
                                        spiked, sfrac)
        for s in range(n_spiked):
            i = spiked[s]
            frac = sfrac[s]
            ts = t + frac * dt
            sp_circ.push_back(i)
            sp_time.push_back(ts)
            vnew[i] = p.v_reset[i]
            ref[i] = p.ref_steps[i]
            if p.flags[i] & F_ADAPT:
                w[i] += p.b[i]
            for m in range(p.n_madc):
                if p.madc_local[m] == i:
                    madc_sf[m] = frac
            if p.out_ptr[i + 1] > p.out_ptr[i]:
                arrival = llround((ts + p.latency) / dt)
                if arrival <= step:
                    arrival = step + 1
                for ks in range(p.out_ptr[i], p.out_ptr[i + 1]):
                    _deliver(p, ring, <int>(arrival % L), p.out_keys[ks])
                dirty[arrival % L] = 1
        tmp = v
        v = vnew
        vnew = tmp
        # --- MADC samples in [t, t_end), linear between the step's end points ----------
        while madc_next < p.n_madc_samples:
            tk = madc_next * p.madc_period
            if tk >= t_end:
                break
            frac = (tk - t) / dt
            for m in range(p.n_madc):
                i = p.madc_local[m]
                if madc_sf[m] > 1.0:
                    vi = madc_prev[m] + frac * (v[i] - madc_prev[m])
                elif frac < madc_sf[m]:
                    # rising to the threshold crossing, then the reset
                    vi = madc_prev[m] + frac / madc_sf[m] * (p.v_th[i] - madc_prev[m])
                else:
                    vi = v[i]
                mval = vi * p.madc_gain[i] + p.madc_offset[i]
                if p.madc_noise != 0.0:
                    mval = mval + p.madc_noise * cysim_gauss(&nstate[i])
                if mval < 0.0:
                    mval = 0.0
                elif mval > 1023.0:
                    mval = 1023.0
                madc_out[madc_next * p.n_madc + m] = <uint16_t>(mval + 0.5)
            madc_next += 1

    free(vbuf0); free(vbuf1); free(w); free(syn); free(ring); free(ref); free(nstate)
    free(spec_v); free(bg_next); free(bg_rng); free(madc_prev); free(vq); free(spiked); free(sfrac)
    free(cbuf); free(dirty)
    sp_circ_out.swap(sp_circ_local)
    sp_time_out.swap(sp_time_local)
    return 0


def simulate(dict inp, int threads=1):
    """Integrate all trials described by ``inp`` (see :func:`cysim.engine.prepare`).

    Returns ``(spike_trial, spike_local, spike_time_us, cadc, madc)``: spikes with local
    circuit indices, CADC samples (uint8, global circuit order), MADC samples (uint16).
    """
    cdef Params p
    cdef int64_t n_trials = inp["n_trials"]
    cdef int n = inp["n"]
    # keep references to contiguous arrays alive for the whole call
    keep = {}

    def f64(name):
        a = np.ascontiguousarray(inp[name], dtype=np.float64).reshape(-1)
        if a.size == 0:
            a = np.zeros(1)
        keep[name] = a
        return a

    def i64(name):
        a = np.ascontiguousarray(inp[name], dtype=np.int64).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.int64)
        keep[name] = a
        return a

    def i32(name):
        a = np.ascontiguousarray(inp[name], dtype=np.int32).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.int32)
        keep[name] = a
        return a

    def u8(name):
        a = np.ascontiguousarray(inp[name], dtype=np.uint8).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.uint8)
        keep[name] = a
        return a

    def u64(name):
        a = np.ascontiguousarray(inp[name], dtype=np.uint64).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.uint64)
        keep[name] = a
        return a

    cdef double[::1] d
    cdef int64_t[::1] li
    cdef int32_t[::1] ii
    cdef uint8_t[::1] bb
    cdef uint64_t[::1] uu

    p.dt = inp["dt"]
    p.n_steps = inp["n_steps"]
    p.n = n
    p.latency = inp["latency"]
    p.rail = inp["rail"]
    p.ring_len = inp["ring_len"]

    d = f64("e_l"); p.e_l = &d[0]
    d = f64("v_reset"); p.v_reset = &d[0]
    d = f64("v_th"); p.v_th = &d[0]
    d = f64("v_t"); p.v_t = &d[0]
    d = f64("delta_t"); p.delta_t = &d[0]
    d = f64("e_rev_e"); p.e_rev_e = &d[0]
    d = f64("e_rev_i"); p.e_rev_i = &d[0]
    d = f64("inv_tau_m"); p.inv_tau_m = &d[0]
    d = f64("p_mem"); p.p_mem = &d[0]
    d = f64("p_vexc"); p.p_vexc = &d[0]
    d = f64("p_vinh"); p.p_vinh = &d[0]
    d = f64("p_vconst"); p.p_vconst = &d[0]
    d = f64("p_exc"); p.p_exc = &d[0]
    d = f64("p_inh"); p.p_inh = &d[0]
    d = f64("f_exc"); p.f_exc = &d[0]
    d = f64("f_inh"); p.f_inh = &d[0]
    d = f64("p_w"); p.p_w = &d[0]
    d = f64("a"); p.a = &d[0]
    d = f64("b"); p.b = &d[0]
    d = f64("i_bias"); p.i_bias = &d[0]
    d = f64("noise_step"); p.noise_step = &d[0]
    d = f64("ref_steps"); p.ref_steps = &d[0]
    bb = u8("flags"); p.flags = &bb[0]
    d = f64("spike_en"); p.spike_en = &d[0]
    ii = i32("special"); p.special = &ii[0]
    p.n_special = inp["n_special"]
    p.has_noise = 1 if inp["has_noise"] else 0
    li = i64("key_ptr"); p.key_ptr = &li[0]
    ii = i32("key_target"); p.key_target = &ii[0]
    d = f64("key_amp"); p.key_amp = &d[0]
    li = i64("out_ptr"); p.out_ptr = &li[0]
    ii = i32("out_keys"); p.out_keys = &ii[0]
    li = i64("ev_ptr"); p.ev_ptr = &li[0]
    li = i64("ev_step"); p.ev_step = &li[0]
    ii = i32("ev_key"); p.ev_key = &ii[0]
    p.n_bg = inp["n_bg"]
    bb = u8("bg_mode"); p.bg_mode = &bb[0]
    d = f64("bg_period"); p.bg_period = &d[0]
    li = i64("bg_ptr"); p.bg_ptr = &li[0]
    ii = i32("bg_keys"); p.bg_keys = &ii[0]
    uu = u64("bg_seeds"); p.bg_seeds = &uu[0]
    uu = u64("noise_seeds"); p.noise_seeds = &uu[0]
    d = f64("normal_table"); p.normal_table = &d[0]
    li = i64("cadc_steps"); p.cadc_steps = &li[0]
    p.n_total = inp["n_total"]
    d = f64("passive_rho"); p.passive_rho = &d[0]
    d = f64("passive_sigma"); p.passive_sigma = &d[0]
    d = f64("cadc_gain"); p.cadc_gain = &d[0]
    d = f64("cadc_offset"); p.cadc_offset = &d[0]
    p.cadc_noise = inp["cadc_noise"]
    d = f64("madc_gain"); p.madc_gain = &d[0]
    d = f64("madc_offset"); p.madc_offset = &d[0]
    p.madc_noise = inp["madc_noise"]
    p.n_cadc = inp["n_cadc"]
    ii = i32("madc_local"); p.madc_local = &ii[0]
    p.n_madc = inp["n_madc"]
    p.n_madc_samples = inp["n_madc_samples"]
    p.madc_period = inp["madc_period"]

    li = i64("order"); p.order = &li[0]
    cadc = np.zeros((n_trials, max(p.n_cadc, 0), p.n_total), dtype=np.uint8)
    madc = np.zeros((n_trials, max(p.n_madc_samples, 0), p.n_madc), dtype=np.uint16)
    cdef uint8_t[::1] cflat = cadc.reshape(-1) if cadc.size else np.zeros(1, dtype=np.uint8)
    cdef uint16_t[::1] mflat = madc.reshape(-1) if madc.size else np.zeros(1, dtype=np.uint16)
    p.cadc_out = &cflat[0]
    p.madc_out = &mflat[0]

    cdef vector[vector[int32_t]] sp_circ
    cdef vector[vector[double]] sp_time
    sp_circ.resize(n_trials)
    sp_time.resize(n_trials)
    cdef int64_t tr
    cdef int failed = 0
    cdef int rc
    if threads < 1:
        threads = 1
    if n_trials < threads:
        threads = <int>max(n_trials, 1)
    with nogil:
        for tr in prange(n_trials, num_threads=threads, schedule="dynamic"):
            rc = _run_trial(&p, tr, &sp_circ[tr], &sp_time[tr])
            if rc != 0:
                failed += 1
    if failed:
        raise MemoryError("the virtual chip could not allocate its state for a trial")

    counts = np.array([sp_circ[tr].size() for tr in range(n_trials)], dtype=np.int64)
    total = int(counts.sum())
    spike_trial = np.repeat(np.arange(n_trials, dtype=np.int32), counts)
    spike_local = np.empty(total, dtype=np.int32)
    spike_time = np.empty(total, dtype=np.float64)
    cdef int32_t[::1] sl = spike_local if total else np.zeros(1, dtype=np.int32)
    cdef double[::1] st = spike_time if total else np.zeros(1)
    cdef int64_t pos = 0
    cdef size_t j
    for tr in range(n_trials):
        for j in range(sp_circ[tr].size()):
            sl[pos] = sp_circ[tr][j]
            st[pos] = sp_time[tr][j]
            pos += 1
    return spike_trial, spike_local, spike_time, cadc, madc
