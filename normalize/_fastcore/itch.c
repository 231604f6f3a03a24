/* ITCH 5.0 message table and field decoder; see itch.h. */
#include "itch.h"

const uint8_t itch_lengths[256] = {
    ['S'] = 12, ['R'] = 39, ['H'] = 25, ['Y'] = 20, ['L'] = 26, ['V'] = 35,
    ['W'] = 12, ['K'] = 28, ['J'] = 35, ['h'] = 21, ['A'] = 36, ['F'] = 40,
    ['E'] = 31, ['C'] = 36, ['X'] = 23, ['D'] = 19, ['U'] = 35, ['P'] = 44,
    ['Q'] = 40, ['B'] = 19, ['I'] = 50, ['N'] = 20, ['O'] = 48,
};

const itch_alpha_span itch_alpha_spans[256][13] = {
    ['S'] = {{11, 1}},
    ['R'] = {{11, 8}, {19, 1}, {20, 1}, {25, 1}, {26, 1}, {27, 2}, {29, 1}, {30, 1}, {31, 1},
             {32, 1}, {33, 1}, {38, 1}},
    ['H'] = {{11, 8}, {19, 1}, {20, 1}, {21, 4}},
    ['Y'] = {{11, 8}, {19, 1}},
    ['L'] = {{11, 4}, {15, 8}, {23, 1}, {24, 1}, {25, 1}},
    ['W'] = {{11, 1}},
    ['K'] = {{11, 8}, {23, 1}},
    ['J'] = {{11, 8}},
    ['h'] = {{11, 8}, {19, 1}, {20, 1}},
    ['A'] = {{19, 1}, {24, 8}},
    ['F'] = {{19, 1}, {24, 8}, {36, 4}},
    ['C'] = {{31, 1}},
    ['P'] = {{19, 1}, {24, 8}},
    ['Q'] = {{19, 8}, {39, 1}},
    ['I'] = {{27, 1}, {28, 8}, {48, 1}, {49, 1}},
    ['N'] = {{11, 8}, {19, 1}},
    ['O'] = {{11, 8}, {19, 1}},
};

void itch_decode_fields(const uint8_t *p, itch_message *m)
{
    m->type = p[0];
    m->locate = itch_u16(p + 1);
    m->tracking = itch_u16(p + 3);
    m->timestamp = itch_u48(p + 5);
    switch (p[0]) {
    case 'S':
        m->u.S.event_code = p[11];
        break;
    case 'R':
        itch_alpha_read(&m->u.R.stock, p + 11, 8);
        m->u.R.market_category = p[19];
        m->u.R.financial_status_indicator = p[20];
        m->u.R.round_lot_size = itch_u32(p + 21);
        m->u.R.round_lots_only = p[25];
        m->u.R.issue_classification = p[26];
        itch_alpha_read(&m->u.R.issue_sub_type, p + 27, 2);
        m->u.R.authenticity = p[29];
        m->u.R.short_sale_threshold_indicator = p[30];
        m->u.R.ipo_flag = p[31];
        m->u.R.luld_reference_price_tier = p[32];
        m->u.R.etp_flag = p[33];
        m->u.R.etp_leverage_factor = itch_u32(p + 34);
        m->u.R.inverse_indicator = p[38];
        break;
    case 'H':
        itch_alpha_read(&m->u.H.stock, p + 11, 8);
        m->u.H.trading_state = p[19];
        m->u.H.reserved = p[20];
        itch_alpha_read(&m->u.H.reason, p + 21, 4);
        break;
    case 'Y':
        itch_alpha_read(&m->u.Y.stock, p + 11, 8);
        m->u.Y.reg_sho_action = p[19];
        break;
    case 'L':
        itch_alpha_read(&m->u.L.mpid, p + 11, 4);
        itch_alpha_read(&m->u.L.stock, p + 15, 8);
        m->u.L.primary_market_maker = p[23];
        m->u.L.market_maker_mode = p[24];
        m->u.L.market_participant_state = p[25];
        break;
    case 'V':
        m->u.V.level_1 = itch_u64(p + 11);
        m->u.V.level_2 = itch_u64(p + 19);
        m->u.V.level_3 = itch_u64(p + 27);
        break;
    case 'W':
        m->u.W.breached_level = p[11];
        break;
    case 'K':
        itch_alpha_read(&m->u.K.stock, p + 11, 8);
        m->u.K.release_time = itch_u32(p + 19);
        m->u.K.qualifier = p[23];
        m->u.K.ipo_price = itch_u32(p + 24);
        break;
    case 'J':
        itch_alpha_read(&m->u.J.stock, p + 11, 8);
        m->u.J.reference_price = itch_u32(p + 19);
        m->u.J.upper_price = itch_u32(p + 23);
        m->u.J.lower_price = itch_u32(p + 27);
        m->u.J.extension = itch_u32(p + 31);
        break;
    case 'h':
        itch_alpha_read(&m->u.h.stock, p + 11, 8);
        m->u.h.market_code = p[19];
        m->u.h.action = p[20];
        break;
    case 'A':
    case 'F':
        m->u.A.ref = itch_u64(p + 11);
        m->u.A.side = p[19];
        m->u.A.shares = itch_u32(p + 20);
        itch_alpha_read(&m->u.A.stock, p + 24, 8);
        m->u.A.price = itch_u32(p + 32);
        if (p[0] == 'F')
            itch_alpha_read(&m->u.A.attribution, p + 36, 4);
        else
            m->u.A.attribution.len = 0;
        break;
    case 'E':
        m->u.E.ref = itch_u64(p + 11);
        m->u.E.shares = itch_u32(p + 19);
        m->u.E.match = itch_u64(p + 23);
        break;
    case 'C':
        m->u.C.ref = itch_u64(p + 11);
        m->u.C.shares = itch_u32(p + 19);
        m->u.C.match = itch_u64(p + 23);
        m->u.C.printable = p[31];
        m->u.C.price = itch_u32(p + 32);
        break;
    case 'X':
        m->u.X.ref = itch_u64(p + 11);
        m->u.X.shares = itch_u32(p + 19);
        break;
    case 'D':
        m->u.D.ref = itch_u64(p + 11);
        break;
    case 'U':
        m->u.U.ref = itch_u64(p + 11);
        m->u.U.new_ref = itch_u64(p + 19);
        m->u.U.shares = itch_u32(p + 27);
        m->u.U.price = itch_u32(p + 31);
        break;
    case 'P':
        m->u.P.ref = itch_u64(p + 11);
        m->u.P.side = p[19];
        m->u.P.shares = itch_u32(p + 20);
        itch_alpha_read(&m->u.P.stock, p + 24, 8);
        m->u.P.price = itch_u32(p + 32);
        m->u.P.match = itch_u64(p + 36);
        break;
    case 'Q':
        m->u.Q.shares = itch_u64(p + 11);
        itch_alpha_read(&m->u.Q.stock, p + 19, 8);
        m->u.Q.price = itch_u32(p + 27);
        m->u.Q.match = itch_u64(p + 31);
        m->u.Q.cross_type = p[39];
        break;
    case 'B':
        m->u.B.match = itch_u64(p + 11);
        break;
    case 'I':
        m->u.I.paired_shares = itch_u64(p + 11);
        m->u.I.imbalance_shares = itch_u64(p + 19);
        m->u.I.imbalance_direction = p[27];
        itch_alpha_read(&m->u.I.stock, p + 28, 8);
        m->u.I.far_price = itch_u32(p + 36);
        m->u.I.near_price = itch_u32(p + 40);
        m->u.I.current_reference_price = itch_u32(p + 44);
        m->u.I.cross_type = p[48];
        m->u.I.price_variation_indicator = p[49];
        break;
    case 'N':
        itch_alpha_read(&m->u.N.stock, p + 11, 8);
        m->u.N.interest_flag = p[19];
        break;
    case 'O':
        itch_alpha_read(&m->u.O.stock, p + 11, 8);
        m->u.O.open_eligibility_status = p[19];
        m->u.O.minimum_allowable_price = itch_u32(p + 20);
        m->u.O.maximum_allowable_price = itch_u32(p + 24);
        m->u.O.near_execution_price = itch_u32(p + 28);
        m->u.O.near_execution_time = itch_u64(p + 32);
        m->u.O.lower_price_range_collar = itch_u32(p + 40);
        m->u.O.upper_price_range_collar = itch_u32(p + 44);
        break;
    default:
        break;
    }
}
