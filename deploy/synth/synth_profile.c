/* deploy/synth/synth_profile.c — the site profiles of sdefed-synth.
 *
 * A profile is the case mix of one kind of site: its age structure, sex
 * ratio, ethnic mix, how common the chronic conditions are relative to the
 * "mixed" baseline, how much NSAID use there is and which NSAIDs, how often
 * people see a clinician and how many die. Federated demos need sites that
 * differ the way real NHS sites do (a young city population next to an older
 * rural one), so results pooled across sites are not trivially equal.
 */
#include <string.h>

#include "synth.h"

static const struct synth_profile profiles[] = {
    {
        .name = "urban-young",
        .description = "inner-city: young adults, diverse, fewer chronic conditions, more asthma",
        .male_frac = 0.51,
        .age = { { 0.30, 27, 8 }, { 0.48, 40, 11 }, { 0.22, 62, 14 } },
        .race_w = { 0.55, 0.22, 0.15, 0.08 },
        .hispanic_frac = 0.06,
        .m_t2dm = 0.9, .m_htn = 0.8, .m_asthma = 1.35, .m_af = 0.8,
        .m_cad = 0.8, .m_hf = 0.8, .m_oa = 0.8,
        .nsaid_mult = 0.9, .coxib_share = 0.40,
        .visit_rate = 2.6, .mort_mult = 0.9, .bmi_shift = -0.8,
    },
    {
        .name = "rural-older",
        .description = "rural and coastal: older, mostly white, more cardiometabolic disease and osteoarthritis",
        .male_frac = 0.47,
        .age = { { 0.15, 30, 10 }, { 0.35, 56, 10 }, { 0.50, 73, 9 } },
        .race_w = { 0.95, 0.02, 0.01, 0.02 },
        .hispanic_frac = 0.01,
        .m_t2dm = 1.1, .m_htn = 1.15, .m_asthma = 0.85, .m_af = 1.25,
        .m_cad = 1.1, .m_hf = 1.2, .m_oa = 1.3,
        .nsaid_mult = 1.35, .coxib_share = 0.20,
        .visit_rate = 3.8, .mort_mult = 1.1, .bmi_shift = 0.6,
    },
    {
        .name = "mixed",
        .description = "a typical district general hospital catchment",
        .male_frac = 0.49,
        .age = { { 0.25, 30, 12 }, { 0.45, 48, 13 }, { 0.30, 68, 10 } },
        .race_w = { 0.80, 0.09, 0.05, 0.06 },
        .hispanic_frac = 0.03,
        .m_t2dm = 1.0, .m_htn = 1.0, .m_asthma = 1.0, .m_af = 1.0,
        .m_cad = 1.0, .m_hf = 1.0, .m_oa = 1.0,
        .nsaid_mult = 1.0, .coxib_share = 0.30,
        .visit_rate = 3.2, .mort_mult = 1.0, .bmi_shift = 0.0,
    },
    {
        .name = "deprived-urban",
        .description = "deprived urban: earlier and heavier diabetes, hypertension and heart failure, more NSAIDs",
        .male_frac = 0.50,
        .age = { { 0.30, 31, 10 }, { 0.45, 50, 12 }, { 0.25, 66, 10 } },
        .race_w = { 0.70, 0.15, 0.08, 0.07 },
        .hispanic_frac = 0.04,
        .m_t2dm = 1.6, .m_htn = 1.3, .m_asthma = 1.4, .m_af = 1.0,
        .m_cad = 1.4, .m_hf = 1.4, .m_oa = 1.2,
        .nsaid_mult = 1.5, .coxib_share = 0.15,
        .visit_rate = 4.2, .mort_mult = 1.5, .bmi_shift = 1.5,
    },
};

#define N_PROFILES (sizeof profiles / sizeof profiles[0])

const struct synth_profile *profile_find(const char *name)
{
    for (size_t i = 0; i < N_PROFILES; i++)
        if (strcmp(profiles[i].name, name) == 0)
            return &profiles[i];
    return NULL;
}

const struct synth_profile *profile_default(uint64_t seed)
{
    /* Mix the seed so consecutive seeds do not cycle through profiles in order. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return &profiles[z % N_PROFILES];
}

size_t profile_count(void)
{
    return N_PROFILES;
}

const struct synth_profile *profile_at(size_t i)
{
    return i < N_PROFILES ? &profiles[i] : NULL;
}
