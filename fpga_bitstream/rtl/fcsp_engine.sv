// The propagation and search engine of ISA v1 (docs/isa.md, docs/rtl.md): one instance at a time, bit-identical to
// the reference model (engine/reference.py) in domains, status, node, solution and sweep counts, and in cycles equal
// to the cycle model of docs/device.md: sweeps * (ceil(max(C, 1) / LANES) + 2) + 2 * nodes.
//
// Schedule. A sweep is ceil(max(C,1)/LANES) + 1 EVAL cycles and one COMMIT cycle. The lanes are two pipeline stages
// (fcsp_lane.sv): in EVAL cycle e, lane l takes constraint e*LANES + l on the domains of the previous sweep (`cur`)
// into its first stage, and its second stage gives the outputs of constraint (e-1)*LANES + l, which are ANDed into
// `nxt`; so the last group's outputs come one cycle after its records. COMMIT checks for a conflict (a propagator's
// flag or an empty domain) or a fixpoint (nothing changed) and copies `nxt` to `cur`.
// Every node costs two more cycles before its first sweep: NODE_A and NODE_B. For a branch they choose the
// variable (NODE_A: fewest values, lowest index; its priority row is read from block RAM) and the value (NODE_B:
// highest priority, lowest value), push the right child (the value removed) on the stack and fix the value in
// `cur` (the left child, explored first). For the next node after a conflict or a solution they pop the stack
// (NODE_A: read address, NODE_B: the frame). For the root they are the same two cycles with nothing to do. The
// decisions (stop at max_solutions, tree exhausted, node limit, abort) are taken in the COMMIT cycle that ends a
// node, so they cost no cycle of their own.
//
// Storage: `cur`, `nxt` and `res` (the first solution, or the root's fixpoint) in registers; the search stack
// (SD frames of NV*DW bits) and the priorities (NV rows of DW bytes) in block RAM with a registered read; the
// program's records in registers, written through a 32-bit port from the host-side compiler's image
// (fpgacspd.rtl.image; record c at word (c + 1) * STRIDE).
module fcsp_engine #(
    parameter int NV    = 10,  // variables
    parameter int DW    = 8,   // bits per domain (largest D)
    parameter int NC    = 8,   // constraints
    parameter int LANES = 3,   // constraints evaluated per cycle
    parameter int MS    = 5,   // scope positions per constraint
    parameter int KINDS = 15,  // units built: bit 0 ALLDIFF, 1 NEQ, 2 TABLE2, 3 LINEAR
    parameter int SD    = NV,  // stack frames (NV always suffices)
    // FIXED = 1: every constraint's scope is wired at elaboration (SCOPES: constraint c, position p at
    // [(c*MS + p)*VW +: VW]) instead of read from the program image, for a structure-specialised engine (every
    // 9x9 Sudoku has the same 27 scopes): the lanes' read muxes and the write-back's decoders become wires.
    parameter bit   FIXED = 1'b0,
    parameter logic [NC*MS*(NV > 1 ? $clog2(NV) : 1)-1:0] SCOPES = '0,
    // With FIXED, the scope positions that hold a variable (bit c*MS + p): constants of the wired engine, whose
    // programs have exactly the wired constraints (the host-side compiler refuses others)
    parameter logic [NC*MS-1:0] USED = '0,
    // With FIXED, the inverse of SCOPES for the write-back: variable v's o-th occurrence (o < MO) at
    // [(v*MO + o)*$clog2(NC*MS+1) +: ...] is 1 + c*MS + p, 0 for none. EngineParams.verilog_parameters() computes
    // all three from one list of scopes; Yosys cannot invert SCOPES at elaboration in reasonable time (docs/rtl.md).
    parameter int MO = 1,
    parameter logic [NV*MO*$clog2(NC*MS+1)-1:0] OCC = '0,
    localparam int VW = NV > 1 ? $clog2(NV) : 1,
    localparam int RWORDS = 4 + 2 * MS + 2 * DW,  // words of a record
    localparam int RLOG = $clog2(RWORDS),  // record stride 2^RLOG words
    localparam int AW = $clog2((NC + 1) << RLOG)
) (
    input  logic          clk,
    input  logic          rst,            // synchronous, active high
    // program memory, written while not busy
    input  logic          prog_we,
    input  logic [AW-1:0] prog_addr,
    input  logic [  31:0] prog_wdata,
    // the instance: initial domains and priority rows, written while not busy
    input  logic          dom_we,
    input  logic [VW-1:0] dom_addr,
    input  logic [DW-1:0] dom_wdata,
    input  logic          prio_we,
    input  logic [VW-1:0] prio_addr,
    input  logic [DW*8-1:0] prio_wdata,  // byte v: the priority of value v
    // one run
    input  logic          start,
    input  logic          mode_solve,     // 0: PROPAGATE, 1: SOLVE
    input  logic          use_prio,
    input  logic [  63:0] node_limit,     // >= 1
    input  logic [  63:0] max_solutions,  // >= 1
    input  logic          abort_req,      // stop at the next node (docs/device.md, CTRL.ABORT)
    output logic          busy,
    output logic          done,           // the outcome below is valid (until the next start)
    output logic [   2:0] status,         // SOLVED 1, FIXPOINT 2, CONFLICT 3, UNSAT 4, LIMIT 5
    output logic          aborted,
    output logic [  63:0] nodes,
    output logic [  63:0] solutions,
    output logic [  63:0] sweeps,
    output logic [  63:0] cycles,
    // the result domains: all zero for CONFLICT and UNSAT
    input  logic [VW-1:0] res_addr,
    output logic [DW-1:0] res_data
);
  localparam logic [2:0] SOLVED = 3'd1, FIXPOINT = 3'd2, CONFLICT = 3'd3, UNSAT = 3'd4, LIMIT = 3'd5;
  localparam int EW = $clog2(NC / LANES + 2);  // eval-cycle counter, 0..ceil(NC/LANES)
  localparam int SW = $clog2(SD + 1);  // stack pointer, 0..SD
  localparam int SAW = SD > 1 ? $clog2(SD) : 1;  // a frame's address
  localparam int CIW = NC > 1 ? $clog2(NC) : 1;  // a constraint's index

  typedef enum logic [2:0] {
    S_IDLE,
    S_NODE_A,
    S_NODE_B,
    S_EVAL,
    S_COMMIT,
    S_DONE
  } state_t;
  typedef enum logic [1:0] {
    N_ROOT,
    N_BRANCH,
    N_POP
  } next_t;

  // --- program memory ---------------------------------------------------------------------------------------
  logic [NV-1:0] active;  // variable v < the program's N: a register, not NV compares on every sweep's path
  logic [DW-1:0] full;  // (1 << D) - 1, written with D: a register keeps the shift off every lane's path
  logic [$clog2(NC+1)-1:0] num_cons;
  // one flat vector per field, constraint c at [c*width +: width] (Verilator cannot loop over unpacked arrays
  // with nonblocking writes)
  logic [NC*3-1:0] c_kind;
  logic [NC-1:0] c_flag;
  logic [NC*MS-1:0] c_used;
  logic [NC*32-1:0] c_k;
  logic [NC*64-1:0] c_rhs;
  logic [NC*MS*VW-1:0] c_vars;
  logic [NC*MS*32-1:0] c_coeffs;
  logic [NC*DW*DW-1:0] c_rows;

  wire [AW-RLOG-1:0] w_rec = prog_addr[AW-1:RLOG];  // 0: the header, c + 1: constraint c
  wire [RLOG-1:0] w_field = prog_addr[RLOG-1:0];
  wire [AW-RLOG-1:0] w_con_wide = w_rec - 1'b1;
  wire [CIW-1:0] w_con = CIW'(w_con_wide);

  always_ff @(posedge clk) begin
    if (prog_we && !busy) begin
      if (w_rec == '0) begin
        case (w_field)
          0: for (int v = 0; v < NV; v++) active[v] <= 32'(v) < 32'(prog_wdata[VW:0]);
          1: full <= DW'((65'd1 << prog_wdata[6:0]) - 65'd1);
          2: num_cons <= prog_wdata[$clog2(NC+1)-1:0];
          default: ;
        endcase
      end else if (int'(w_con_wide) < NC) begin
        if (w_field == 0) begin
          c_kind[int'(w_con)*3+:3] <= prog_wdata[2:0];
          c_flag[w_con] <= prog_wdata[8];
          for (int p = 0; p < MS; p++) c_used[int'(w_con)*MS+p] <= 32'(p) < 32'(prog_wdata[23:16]);
        end
        if (w_field == 1) c_k[int'(w_con)*32+:32] <= prog_wdata;
        if (w_field == 2) c_rhs[int'(w_con)*64+:32] <= prog_wdata;
        if (w_field == 3) c_rhs[int'(w_con)*64+32+:32] <= prog_wdata;
        for (int p = 0; p < MS; p++) begin
          if (int'(w_field) == 4 + p) c_vars[(int'(w_con)*MS+p)*VW+:VW] <= prog_wdata[VW-1:0];
          if (int'(w_field) == 4 + MS + p) c_coeffs[(int'(w_con)*MS+p)*32+:32] <= prog_wdata;
        end
        for (int a = 0; a < DW; a++) begin
          if (int'(w_field) == 4 + 2 * MS + 2 * a) begin
            for (int b = 0; b < (DW < 32 ? DW : 32); b++) c_rows[(int'(w_con)*DW+a)*DW+b] <= prog_wdata[b];
          end
          if (int'(w_field) == 5 + 2 * MS + 2 * a) begin
            for (int b = 32; b < DW; b++) c_rows[(int'(w_con)*DW+a)*DW+b] <= prog_wdata[b-32];
          end
        end
      end
    end
  end

  // --- state ---------------------------------------------------------------------------------------------
  state_t state;
  next_t next_kind;
  logic [NV*DW-1:0] cur, nxt, res;  // variable v at [v*DW +: DW]
  logic [EW-1:0] ecyc;
  logic [SW-1:0] sp;
  logic conf_acc, is_root, mode_q, use_prio_q;
  logic [63:0] limit_q, max_sol_less_one;  // max_solutions - 1: the compare below needs no adder
  logic [VW-1:0] bvar;


  // --- lanes: constraint e*LANES + l in eval cycle e ------------------------------------------------------
  logic [MS*DW-1:0] lane_doms[LANES], lane_outs[LANES];
  logic [LANES-1:0] lane_conflict, lane_valid;
  logic [$clog2(NC+2*LANES)-1:0] lane_con_wide[LANES];
  logic [CIW-1:0] lane_con[LANES];
  logic [2:0] lane_kind[LANES];
  logic [MS-1:0] lane_used[LANES];
  /* verilator lint_off UNUSEDSIGNAL */  // the wired engine (below) reads its scopes as elaboration constants
  logic [MS*VW-1:0] lane_vars[LANES];
  /* verilator lint_on UNUSEDSIGNAL */

  // the second pipeline stage's view of each lane: the record of the previous cycle (the wired engine's are constants)
  logic [MS*DW-1:0] lane_doms_late[LANES];
  logic [LANES-1:0] lane_valid_late;
  logic [MS-1:0] lane_used_late[LANES];
  /* verilator lint_off UNUSEDSIGNAL */
  logic [MS*VW-1:0] lane_vars_late[LANES];
  /* verilator lint_on UNUSEDSIGNAL */

  // WIRED (FIXED with every constraint in one cycle): lane l evaluates constraint l, and the variables of its scope
  // are elaboration constants, so its reads are wires and each variable ANDs exactly its own occurrences (the
  // general path below builds an NV:1 mux per scope position and a decoder per lane output).
  localparam bit WIRED = FIXED && NC <= LANES;

  for (genvar l = 0; l < LANES; l++) begin : g_lane
    always_comb begin
      lane_con_wide[l] = WIRED ? $clog2(NC + 2 * LANES)'(l) : $clog2(NC + 2 * LANES)'(int'(ecyc) * LANES + l);
      lane_valid[l] = WIRED ? l < NC && USED[l*MS+:MS] != '0
                            : int'(lane_con_wide[l]) < int'(num_cons) && int'(lane_con_wide[l]) < NC;
      lane_con[l] = lane_valid[l] ? CIW'(lane_con_wide[l]) : '0;
      lane_kind[l] = lane_valid[l] ? c_kind[int'(lane_con[l])*3+:3] : 3'd0;
      lane_used[l] = WIRED ? (l < NC ? USED[l*MS+:MS] : '0) : c_used[int'(lane_con[l])*MS+:MS];
      lane_vars[l] = FIXED ? SCOPES[int'(lane_con[l])*MS*VW+:MS*VW] : c_vars[int'(lane_con[l])*MS*VW+:MS*VW];
    end
    // generate, not a procedural if on WIRED: Yosys elaborates both arms of an if before it folds the constant,
    // and the NV:1 read muxes of the general path are what the wired engine exists to avoid
    if (WIRED) begin : g_read
      for (genvar p = 0; p < MS; p++) begin : g_pos
        localparam int V = l < NC ? int'(SCOPES[(l*MS+p)*VW+:VW]) : 0;
        assign lane_doms[l][p*DW+:DW] = cur[V*DW+:DW];
      end
    end else begin : g_read
      always_comb
        for (int p = 0; p < MS; p++) lane_doms[l][p*DW+:DW] = cur[int'(lane_vars[l][p*VW+:VW])*DW+:DW];
    end
    if (WIRED) begin : g_late  // cur does not change within a sweep: the same wires, one cycle later
      assign lane_doms_late[l] = lane_doms[l];
      assign lane_valid_late[l] = lane_valid[l];
      assign lane_used_late[l] = lane_used[l];
      assign lane_vars_late[l] = lane_vars[l];
    end else begin : g_late
      always_ff @(posedge clk) begin
        lane_doms_late[l] <= lane_doms[l];
        lane_valid_late[l] <= lane_valid[l];
        lane_used_late[l] <= lane_used[l];
        lane_vars_late[l] <= lane_vars[l];
      end
    end
    fcsp_lane #(.MS(MS), .DW(DW), .KINDS(KINDS)) u_lane (
        .clk(clk),
        .kind(lane_kind[l]),
        .flag(c_flag[lane_con[l]]),
        .used(lane_used[l]),
        .full(full),
        .doms(lane_doms[l]),
        .k(c_k[int'(lane_con[l])*32+:32]),
        .rhs(c_rhs[int'(lane_con[l])*64+:64]),
        .coeffs(c_coeffs[int'(lane_con[l])*MS*32+:MS*32]),
        .rows(c_rows[int'(lane_con[l])*DW*DW+:DW*DW]),
        .doms_late(lane_doms_late[l]),
        .outs(lane_outs[l]),
        .conflict(lane_conflict[l])
    );
  end

  // the AND of every lane output (second stage) into its variable (a variable no lane touches stays all ones)
  // (generate for the same reason as g_read: only one of the two is ever elaborated)
  logic [NV*DW-1:0] upd;
  if (WIRED) begin : g_upd
    localparam int OW = $clog2(NC * MS + 1);
    for (genvar v = 0; v < NV; v++) begin : g_var
      logic [MO*DW-1:0] terms;  // occurrence o's lane output, all ones if unused
      for (genvar o = 0; o < MO; o++) begin : g_occ
        localparam int E = int'(OCC[(v*MO+o)*OW+:OW]);
        localparam int L = E == 0 ? 0 : (E - 1) / MS, P = E == 0 ? 0 : (E - 1) % MS;
        if (E != 0 && L < LANES) begin : g_term
          assign terms[o*DW+:DW] = lane_valid_late[L] && lane_used_late[L][P] ? lane_outs[L][P*DW+:DW] : '1;
        end else begin : g_none
          assign terms[o*DW+:DW] = '1;
        end
      end
      logic [DW-1:0] acc;
      always_comb begin
        acc = '1;
        for (int o = 0; o < MO; o++) acc = acc & terms[o*DW+:DW];
      end
      assign upd[v*DW+:DW] = acc;
    end
  end else begin : g_upd
    always_comb begin
      upd = '1;
      for (int l = 0; l < LANES; l++)
        for (int p = 0; p < MS; p++)
          if (lane_valid_late[l] && lane_used_late[l][p])
            upd[int'(lane_vars_late[l][p*VW+:VW])*DW+:DW] =
                upd[int'(lane_vars_late[l][p*VW+:VW])*DW+:DW] & lane_outs[l][p*DW+:DW];
    end
  end
  // Eval cycle e >= 1 ANDs the outputs of group e - 1; the last is the one after the last group's records (the wired
  // engine's sweep is one group whatever num_cons says: its programs fill every wired lane).
  wire eval_out = ecyc != '0;
  wire eval_first = int'(ecyc) == 1;
  wire eval_last = eval_out && (WIRED || int'(ecyc) * LANES >= int'(num_cons));

  // --- branching ------------------------------------------------------------------------------------------
  // pipelined (fcsp_choose.sv): the choice is over cur of two cycles ago and candidates_q over cur of one cycle ago,
  // which is cur now wherever they are read: NODE_A follows a sweep's EVAL and COMMIT with cur unchanged, and
  // COMMIT follows EVAL (cur changes only at the end of COMMIT and of NODE_B)
  logic [VW-1:0] choose_var, choose_var_early;
  logic choose_found, choose_candidates;
  fcsp_choose #(.NV(NV), .DW(DW)) u_choose (
      .clk(clk), .doms(cur), .active(active), .var_index(choose_var), .var_index_early(choose_var_early),
      .found(choose_found), .candidates_q(choose_candidates)
  );

  // --- the end of a sweep ----------------------------------------------------------------------------------
  // Whether each variable emptied or narrowed is registered with nxt in every eval cycle that ANDs outputs (so the
  // last one's are the sweep's), which leaves COMMIT two 81-input ORs before it decides, not 1,458 bits to compare.
  logic [NV*DW-1:0] nxt_new;
  logic [NV-1:0] empty_new, narrowed_new, empty_q, narrowed_q;
  always_comb begin
    nxt_new = (eval_first ? cur : nxt) & upd;
    for (int v = 0; v < NV; v++) begin
      empty_new[v] = active[v] && nxt_new[v*DW+:DW] == '0;
      narrowed_new[v] = active[v] && nxt_new[v*DW+:DW] != cur[v*DW+:DW];
    end
  end
  wire any_empty = empty_q != '0;
  wire changed = narrowed_q != '0;
  wire all_fixed = !choose_candidates;  // every active variable of cur has at most one value (read in COMMIT)
  wire node_conflict = conf_acc | any_empty;
  wire node_solved = !node_conflict && !changed && all_fixed;  // at the fixpoint (cur == nxt)

  // The priority row of the branching variable, read in COMMIT (where the chooser's early output is already the
  // choice) and registered again for NODE_B: a block RAM's output is slow (5.8 ns on ECP5, the first routed
  // critical path), a flip-flop's is not.
  logic [DW*8-1:0] prio_mem[NV];
  logic [DW*8-1:0] prio_read, prio_row;
  always_ff @(posedge clk) begin
    if (prio_we && !busy) prio_mem[prio_addr] <= prio_wdata;
    prio_read <= prio_mem[choose_var_early];
    prio_row <= prio_read;
  end

  // The value: highest priority, ties (and no priorities) to the lowest value. Value v wins when it is present and no
  // other present value beats it, which compares every pair at once (a scan would chain DW comparators); the
  // winner is one-hot, which is what the two writes of a branch need (the left child's value, and the right child
  // with that value removed), so it is never encoded and decoded again.
  // `present` is cur[bvar], registered in NODE_A, so the 81:1 read and the compares are not in one cycle.
  logic [DW-1:0] present, win;
  always_comb begin
    for (int v = 0; v < DW; v++) begin
      win[v] = present[v];
      for (int u = 0; u < DW; u++)
        if (u != v && present[u]) begin
          if (u < v && !(use_prio_q && prio_row[v*8+:8] > prio_row[u*8+:8])) win[v] = 1'b0;
          if (u > v && use_prio_q && prio_row[u*8+:8] > prio_row[v*8+:8]) win[v] = 1'b0;
        end
    end
  end

  // --- the stack -----------------------------------------------------------------------------------------
  logic [NV*DW-1:0] stack_mem[SD];
  logic [NV*DW-1:0] stack_rdata;
  logic stack_we;
  logic [NV*DW-1:0] stack_wdata;
  logic [SAW-1:0] stack_raddr;
  always_comb begin
    stack_wdata = cur;
    stack_wdata[int'(bvar)*DW+:DW] = present & ~win;  // the right child: the value removed
  end
  assign stack_we = state == S_NODE_B && next_kind == N_BRANCH;
  assign stack_raddr = SAW'(sp - 1'b1);
  always_ff @(posedge clk) begin
    if (stack_we) stack_mem[SAW'(sp)] <= stack_wdata;  // sp < SD here: see SD
    stack_rdata <= stack_mem[stack_raddr];
  end

  // --- control -------------------------------------------------------------------------------------------
  assign busy = state != S_IDLE && state != S_DONE;
  assign done = state == S_DONE;
  assign res_data = (status == CONFLICT || status == UNSAT) ? '0 : res[int'(res_addr)*DW+:DW];

  wire cur_we = (dom_we && !busy) || (state == S_NODE_B && next_kind == N_BRANCH);
  wire [VW-1:0] cur_waddr = busy ? bvar : dom_addr;
  wire [DW-1:0] cur_wdata = busy ? win : dom_wdata;  // busy: the left child, the value fixed

  // after a node: whether and how the search goes on (taken in COMMIT). The 64-bit compares are registered a cycle
  // ahead, off the path from the sweep's outcome to the next state: nodes changes only in NODE_A and solutions only in
  // COMMIT, and COMMIT always follows an EVAL cycle.
  logic at_limit, one_more_stops, had_solution;
  always_ff @(posedge clk) begin
    at_limit <= nodes == limit_q;
    one_more_stops <= solutions == max_sol_less_one;
    had_solution <= solutions != '0;
  end
  wire stop_solved = node_solved && one_more_stops;
  wire leaf = node_conflict || node_solved;
  wire exhausted = leaf && sp == '0;

  always_ff @(posedge clk) begin
    if (rst) begin
      state <= S_IDLE;
      status <= '0;
      aborted <= 1'b0;
      nodes <= '0;
      solutions <= '0;
      sweeps <= '0;
      cycles <= '0;
      sp <= '0;
    end else begin
      if (busy) cycles <= cycles + 1'b1;
      // one write port into cur for the host's domains (idle) and the left child's value (NODE_B of a branch)
      if (cur_we) cur[int'(cur_waddr)*DW+:DW] <= cur_wdata;
      case (state)
        S_IDLE, S_DONE:
        if (start) begin
          state <= S_NODE_A;
          next_kind <= N_ROOT;
          mode_q <= mode_solve;
          use_prio_q <= use_prio;
          limit_q <= node_limit;
          max_sol_less_one <= max_solutions - 1'b1;
          status <= '0;
          aborted <= 1'b0;
          nodes <= '0;
          solutions <= '0;
          sweeps <= '0;
          cycles <= '0;
          sp <= '0;
          is_root <= 1'b1;
        end
        S_NODE_A: begin
          nodes <= nodes + 1'b1;
          if (next_kind == N_BRANCH) begin
            bvar <= choose_var;
            present <= cur[int'(choose_var)*DW+:DW];
          end
          if (next_kind == N_POP) sp <= sp - 1'b1;
          state <= S_NODE_B;
        end
        S_NODE_B: begin
          if (next_kind == N_BRANCH) sp <= sp + 1'b1;  // and cur[bvar] takes the left child's value (cur_we)
          if (next_kind == N_POP) cur <= stack_rdata;
          ecyc <= '0;
          state <= S_EVAL;
        end
        S_EVAL: begin
          if (eval_out) begin
            nxt <= nxt_new;
            empty_q <= empty_new;
            narrowed_q <= narrowed_new;
            conf_acc <= (eval_first ? 1'b0 : conf_acc) | (|lane_conflict);
          end
          if (eval_last) state <= S_COMMIT;
          else ecyc <= ecyc + 1'b1;
        end
        S_COMMIT: begin
          sweeps <= sweeps + 1'b1;
          ecyc <= '0;
          // unconditionally, which keeps the sweep's outcome off cur's 729 enables: at a fixpoint nxt == cur, and
          // after a conflict cur is dead (the next node pops the stack into it; the result was taken from cur above)
          cur <= nxt;
          if (!node_conflict && changed) begin
            state <= S_EVAL;  // the next sweep
          end else begin
            is_root <= 1'b0;
            if (is_root) res <= node_conflict ? '0 : cur;
            if (node_solved && solutions == '0) res <= cur;
            if (node_solved) solutions <= solutions + 1'b1;
            if (!mode_q) begin
              status <= node_conflict ? CONFLICT : node_solved ? SOLVED : FIXPOINT;
              state <= S_DONE;
            end else if (stop_solved) begin
              status <= SOLVED;
              state <= S_DONE;
            end else if (exhausted) begin
              status <= had_solution || node_solved ? SOLVED : UNSAT;
              state <= S_DONE;
            end else if (at_limit) begin
              status <= LIMIT;
              state <= S_DONE;
            end else if (abort_req) begin
              aborted <= 1'b1;
              status <= LIMIT;
              state <= S_DONE;
            end else begin
              next_kind <= leaf ? N_POP : N_BRANCH;
              state <= S_NODE_A;
            end
          end
        end
        default: state <= S_IDLE;
      endcase
    end
  end

  wire unused_ok = &{1'b0, choose_found, AW'(0)};
endmodule
