// The card's program decoder: reads a program's canonical encoding (docs/isa.md) byte by byte out of program
// memory and writes the engine's program image through its 32-bit port, the layout fpgacspd.rtl.image documents
// (header words N, D, C; record c at (c + 1) << RLOG: kind | flag << 8 | m << 16, NEQ k, LINEAR rhs, the scope, the
// LINEAR coefficients, the TABLE2 rows). The card runs it after every LOAD (to validate and bind the program) and
// when a RUN names a slot other than the one in the engine, so the engine always runs exactly the bytes in program
// memory, and a host-side compiler is not part of the card's contract.
//
// It checks what a decoder must: the magic, the version, truncation, trailing bytes, known kinds and flags,
// variable indices below N, D in 1..64 (BAD_PROGRAM); and what this build can hold: N <= NV, D <= DW, C <= NC,
// scope lengths <= MS, kinds built (OVER_CAPABILITY). The semantic checks of fpgacsp_proto.isa.validate (duplicate
// variables, rows wider than D, ...) stay with the daemon, which validates every program before it is sent.
// Every record is zeroed before it is written, so nothing of a previous program survives in unused words.
// One byte per cycle (program memory is read combinationally), one image word written per cycle at most.
module fcsp_prog_decode #(
    parameter int NV = 10,
    parameter int DW = 8,
    parameter int NC = 8,
    parameter int MS = 5,
    parameter int KINDS = 15,
    parameter int PBW = 12,  // program memory byte address width
    localparam int RWORDS = 4 + 2 * MS + 2 * DW,
    localparam int RLOG = $clog2(RWORDS),
    localparam int AW = $clog2((NC + 1) << RLOG)
) (
    input  logic           clk,
    input  logic           rst,
    input  logic           start,
    input  logic [PBW-1:0] base,   // first byte in program memory
    input  logic [   31:0] len,    // bytes
    output logic [PBW-1:0] rd_addr,
    input  logic [    7:0] rd_byte,
    output logic           prog_we,
    output logic [ AW-1:0] prog_addr,
    output logic [   31:0] prog_wdata,
    output logic           done,   // one cycle; code valid with it
    output logic [    2:0] code    // 0 OK, 3 BAD_PROGRAM, 4 OVER_CAPABILITY (docs/device.md JobCode)
);
  localparam logic [2:0] OK = 3'd0, BAD_PROGRAM = 3'd3, OVER_CAPABILITY = 3'd4;
  localparam logic [31:0] MAGIC = 32'h50534346;  // "FCSP" read little-endian

  typedef enum logic [4:0] {
    X_IDLE,
    H_MAGIC,
    H_VERSION,
    H_N,
    H_D,
    H_C,
    R_ZERO,    // zero the record of constraint ci
    K_KIND,
    A_EXACT,
    A_M,
    A_VAR,
    N_X,
    N_Y,
    N_K,
    T_X,
    T_Y,
    T_ROW,
    L_OP,
    L_RHS,
    L_M,
    L_COEF,
    L_VAR,
    X_END
  } field_t;
  field_t st;

  logic [31:0] pos;  // bytes consumed
  logic [2:0] fb;  // byte within the field
  logic [63:0] acc;
  logic [31:0] n_vars, m, j, ci, n_cons;
  logic [6:0] d;
  logic [7:0] flag;
  logic [$clog2(RWORDS+1)-1:0] zi;

  function automatic logic [2:0] last_byte(field_t f);
    case (f)
      H_MAGIC, H_N, H_C, A_M, A_VAR, N_X, N_Y, N_K, T_X, T_Y, L_M, L_COEF, L_VAR: return 3'd3;
      H_VERSION: return 3'd1;
      T_ROW, L_RHS: return 3'd7;
      default: return 3'd0;
    endcase
  endfunction

  function automatic logic [AW-1:0] word(logic [31:0] rec, int w);
    return AW'((rec << RLOG) | 32'(w));
  endfunction

  wire consuming = st != X_IDLE && st != R_ZERO && st != X_END;
  wire [63:0] val = acc | ({56'd0, rd_byte} << (8 * fb));
  wire field_end = fb == last_byte(st);
  wire [31:0] v32 = val[31:0];
  wire [31:0] rec = ci + 1;

  assign rd_addr = base + PBW'(pos);

  always_ff @(posedge clk) begin
    prog_we <= 1'b0;
    done <= 1'b0;
    if (rst) begin
      st <= X_IDLE;
      code <= OK;
      pos <= '0;
      fb <= '0;
      acc <= '0;
    end else if (st == X_IDLE) begin
      if (start) begin
        st <= H_MAGIC;
        pos <= '0;
        fb <= '0;
        acc <= '0;
        ci <= '0;
      end
    end else if (st == R_ZERO) begin
      prog_we <= 1'b1;
      prog_addr <= word(rec, int'(zi));
      prog_wdata <= '0;
      zi <= zi + 1'b1;
      if (int'(zi) == RWORDS - 1) st <= K_KIND;
    end else if (st == X_END) begin
      done <= 1'b1;
      code <= pos == len ? OK : BAD_PROGRAM;  // trailing bytes
      st <= X_IDLE;
    end else if (consuming && pos >= len) begin
      done <= 1'b1;  // truncated
      code <= BAD_PROGRAM;
      st <= X_IDLE;
    end else begin
      pos <= pos + 1;
      fb <= field_end ? 3'd0 : fb + 1'b1;
      acc <= field_end ? 64'd0 : val;
      // the TABLE2 rows' and LINEAR rhs' low words, written half way through the field
      if (fb == 3'd3 && (st == T_ROW || st == L_RHS)) begin
        prog_we <= 1'b1;
        prog_addr <= st == T_ROW ? word(rec, 4 + 2 * MS + 2 * int'(j)) : word(rec, 2);
        prog_wdata <= v32;
      end
      if (field_end) begin
        case (st)
          H_MAGIC: if (v32 != MAGIC) fail(BAD_PROGRAM); else st <= H_VERSION;
          H_VERSION: if (val[15:0] != 16'd1) fail(BAD_PROGRAM); else st <= H_N;
          H_N:
          if (v32 == 0) fail(BAD_PROGRAM);
          else if (v32 > NV) fail(OVER_CAPABILITY);
          else begin
            n_vars <= v32;
            write(word(0, 0), v32);
            st <= H_D;
          end
          H_D:
          if (val[7:0] == 0 || val[7:0] > 64) fail(BAD_PROGRAM);
          else if (32'(val[7:0]) > DW) fail(OVER_CAPABILITY);
          else begin
            d <= val[6:0];
            write(word(0, 1), v32);
            st <= H_C;
          end
          H_C:
          if (v32 > NC) fail(OVER_CAPABILITY);
          else begin
            n_cons <= v32;
            write(word(0, 2), v32);
            next_constraint(v32, 32'd0);
          end
          K_KIND:
          if (val[7:0] < 1 || val[7:0] > 4) fail(BAD_PROGRAM);
          else if (!KINDS[val[2:0]-1]) fail(OVER_CAPABILITY);
          else begin
            j <= '0;
            // NEQ and TABLE2 have their kind word now (two positions, no flag); ALLDIFF and LINEAR at m
            if (val[2:0] == 3'd2 || val[2:0] == 3'd3) write(word(rec, 0), {29'd0, val[2:0]} | 32'd2 << 16);
            case (val[2:0])
              3'd1: st <= A_EXACT;
              3'd2: st <= N_X;
              3'd3: st <= T_X;
              default: st <= L_OP;
            endcase
          end
          A_EXACT:
          if (val[7:0] > 1) fail(BAD_PROGRAM);
          else begin
            flag <= val[7:0];
            st <= A_M;
          end
          A_M:
          if (v32 > MS) fail(OVER_CAPABILITY);
          else begin
            m <= v32;
            write(word(rec, 0), 32'd1 | {24'd0, flag} << 8 | v32 << 16);
            if (v32 == 0) next_constraint(n_cons, ci + 1);
            else st <= A_VAR;
          end
          A_VAR, L_VAR:
          if (v32 >= n_vars) fail(BAD_PROGRAM);
          else begin
            write(word(rec, 4 + int'(j)), v32);
            j <= j + 1;
            if (j + 1 == m) next_constraint(n_cons, ci + 1);
            else st <= st == A_VAR ? A_VAR : L_COEF;
          end
          N_X, T_X:
          if (v32 >= n_vars) fail(BAD_PROGRAM);
          else begin
            write(word(rec, 4), v32);
            st <= st == N_X ? N_Y : T_Y;
          end
          N_Y:
          if (v32 >= n_vars) fail(BAD_PROGRAM);
          else begin
            write(word(rec, 5), v32);
            st <= N_K;
          end
          N_K: begin
            write(word(rec, 1), v32);
            next_constraint(n_cons, ci + 1);
          end
          T_Y:
          if (v32 >= n_vars) fail(BAD_PROGRAM);
          else begin
            write(word(rec, 5), v32);
            st <= T_ROW;
          end
          T_ROW: begin
            write(word(rec, 4 + 2 * MS + 2 * int'(j) + 1), val[63:32]);
            j <= j + 1;
            if (j + 1 == 32'(d)) next_constraint(n_cons, ci + 1);
          end
          L_OP:
          if (val[7:0] > 1) fail(BAD_PROGRAM);
          else begin
            flag <= val[7:0];
            st <= L_RHS;
          end
          L_RHS: begin
            write(word(rec, 3), val[63:32]);
            st <= L_M;
          end
          L_M:
          if (v32 > MS) fail(OVER_CAPABILITY);
          else begin
            m <= v32;
            write(word(rec, 0), 32'd4 | {24'd0, flag} << 8 | v32 << 16);
            if (v32 == 0) next_constraint(n_cons, ci + 1);
            else st <= L_COEF;
          end
          L_COEF: begin
            write(word(rec, 4 + MS + int'(j)), v32);
            st <= L_VAR;
          end
          default: fail(BAD_PROGRAM);
        endcase
      end
    end
  end

  task automatic write(logic [AW-1:0] addr, logic [31:0] data);
    prog_we <= 1'b1;
    prog_addr <= addr;
    prog_wdata <= data;
  endtask

  task automatic fail(logic [2:0] why);
    done <= 1'b1;
    code <= why;
    st <= X_IDLE;
  endtask

  task automatic next_constraint(logic [31:0] total, logic [31:0] next);
    ci <= next;
    zi <= '0;
    st <= next == total ? X_END : R_ZERO;
  endtask
endmodule
