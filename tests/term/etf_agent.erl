%% Test agent for distproxy's term codec: a real BEAM answering over fds 3/4.
%% Requests and replies are {packet,4} frames; the first byte of a request is the op:
%%   $R Bytes           -> <<0, term_to_binary(binary_to_term(Bytes), [{minor_version,2}])>>
%%                         or <<1, Reason>> when binary_to_term refuses Bytes
%%   $G N:32 Seed:32    -> N terms, each <<Len:32, term_to_binary(T, [{minor_version,2}])>>
%%   $C N:32 Seed:32    -> N realistic dist control tuples and payloads, same framing
-module(etf_agent).
-export([main/0]).

main() ->
    Port = open_port({fd, 3, 4}, [{packet, 4}, binary, eof]),
    loop(Port).

loop(Port) ->
    receive
        {Port, {data, <<Op, Body/binary>>}} ->
            port_command(Port, handle(Op, Body)),
            loop(Port);
        {Port, eof} ->
            halt(0);
        _Other ->
            loop(Port)
    end.

t2b(T) -> term_to_binary(T, [{minor_version, 2}]).

handle($R, Bytes) ->
    try binary_to_term(Bytes) of
        T -> <<0, (t2b(T))/binary>>
    catch
        _:R -> <<1, (iolist_to_binary(io_lib:format("~p", [R])))/binary>>
    end;
handle($G, <<N:32, Seed:32>>) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}),
    frames([gen(rand:uniform(4) - 1) || _ <- lists:seq(1, N)]);
handle($C, <<N:32, Seed:32>>) ->
    rand:seed(exsss, {Seed, Seed * 3 + 5, Seed * 11 + 7}),
    frames(lists:append([control() || _ <- lists:seq(1, N)])).

frames(Terms) ->
    << <<(byte_size(B)):32, B/binary>> || T <- Terms, B <- [t2b(T)] >>.

pick(L) -> lists:nth(rand:uniform(length(L)), L).

other_pid() ->
    Node = pick(['ec2_node@127.0.0.1', 'bob_colo@10.0.0.2', 'ünïcode@host']),
    NodeBin = atom_to_binary(Node, utf8),
    binary_to_term(<<131, 88, 119, (byte_size(NodeBin)), NodeBin/binary,
                     (rand:uniform(1 bsl 20)):32, (rand:uniform(8) - 1):32,
                     (rand:uniform(1 bsl 32) - 1):32>>).

other_ref() ->
    NodeBin = <<"ec2_node@127.0.0.1">>,
    W = pick([3, 3, 3, 5]),
    Words = << <<(rand:uniform(1 bsl 32) - 1):32>> || _ <- lists:seq(1, W) >>,
    binary_to_term(<<131, 90, W:16, 119, (byte_size(NodeBin)), NodeBin/binary,
                     (rand:uniform(1 bsl 32) - 1):32, Words/binary>>).

other_port() ->
    NodeBin = <<"ec2_node@127.0.0.1">>,
    case rand:uniform(2) of
        1 -> binary_to_term(<<131, 89, 119, (byte_size(NodeBin)), NodeBin/binary,
                              (rand:uniform(1 bsl 28) - 1):32, 7:32>>);
        2 -> binary_to_term(<<131, 120, 119, (byte_size(NodeBin)), NodeBin/binary,
                              (rand:uniform(1 bsl 40) + (1 bsl 28)):64, 7:32>>)
    end.

atom() ->
    pick(['', a, ok, true, false, undefined, net_kernel, 'hello world', 'ünïcödé',
          '日本語', list_to_atom(lists:duplicate(255, $x)),
          list_to_atom(lists:duplicate(255, 16#1F600)), list_to_atom(lists:duplicate(100, 16#e9))]).

leaf() ->
    case rand:uniform(24) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31) - 1;
        3 -> (rand:uniform(1 bsl (rand:uniform(2100))) + (1 bsl 31)) * pick([1, -1]);
        4 -> rand:normal() * math:pow(10, rand:uniform(200) - 100);
        5 -> atom();
        6 -> crypto_bytes(rand:uniform(40) - 1);
        7 -> Bits = rand:uniform(7), <<(crypto_bytes(rand:uniform(5) - 1))/binary, (rand:uniform(1 bsl Bits) - 1):Bits>>;
        8 -> self();
        9 -> spawn(fun() -> ok end);
        10 -> make_ref();
        11 -> alias();
        12 -> hd(erlang:ports());
        13 -> fun lists:map/2;
        14 -> Y = rand:uniform(100), fun(X) -> X + Y end;
        15 -> "abc";
        16 -> [];
        17 -> other_pid();
        18 -> other_ref();
        19 -> other_port();
        20 -> Z = atom(), W = {self(), [1, 2]}, fun(A, B) -> {A, B, Z, W} end;
        21 -> fun() -> ok end;
        22 -> pick([0.0, -0.0, 1.0, 1.0e308, -2.5e-308, 5.0e-324]);
        23 -> case rand:uniform(20) of
                  1 -> pick([lists:duplicate(65535, 7), lists:duplicate(65536, 7)]);
                  _ -> pick([lists:seq(0, 255), [256], [1, 2, 300]])
              end;
        24 -> pick([-1, 255, 256, (1 bsl 31) - 1, 1 bsl 31, -(1 bsl 31), -(1 bsl 31) - 1,
                   1 bsl 2040, (1 bsl 2040) - 1, -(1 bsl 2048)])
    end.

crypto_bytes(N) -> << <<(rand:uniform(256) - 1)>> || _ <- lists:seq(1, N) >>.

gen(0) -> leaf();
gen(D) ->
    case rand:uniform(12) of
        1 -> list_to_tuple([gen(D - 1) || _ <- lists:seq(1, rand:uniform(4) - 1)]);
        2 -> [gen(D - 1) || _ <- lists:seq(1, rand:uniform(4) - 1)];
        3 -> maps:from_list([{gen(D - 1), gen(D - 1)} || _ <- lists:seq(1, rand:uniform(3) - 1)]);
        4 -> maps:from_list([{K, leaf()} || K <- lists:seq(1, 30 + rand:uniform(40))]
                            ++ [{atom(), 1}, {self(), 2}, {<<"k">>, 3}, {{a, 1.5}, 4}]);
        5 -> [gen(D - 1) | gen(D - 1)];
        6 -> [gen(D - 1), gen(D - 1) | leaf()];
        7 -> Fv = gen(D - 1), fun(X) -> {X, Fv} end;
        8 -> list_to_tuple([rand:uniform(1000) || _ <- lists:seq(1, 256 + rand:uniform(10))]);
        9 -> maps:from_list([{leaf(), leaf()} || _ <- lists:seq(1, rand:uniform(33))]);
        _ -> leaf()
    end.

control() ->
    Me = self(), Other = other_pid(), Ref = make_ref(), Alias = alias(),
    Ctl = pick([{6, Me, '', pick([net_kernel, rex, global_name_server, code_server])},
                {22, Me, Other}, {33, Me, Alias}, {19, Me, Other, Ref}, {19, Me, rex, Ref},
                {20, Me, Other, Ref}, {1, Me, Other}, {35, rand:uniform(1 bsl 40), Me, Other},
                {36, 4, Other, Me}, {24, Me, Other}, {26, Me, Other}, {28, Other, Me, Ref},
                {31, Ref, Me, 2, Other},
                {29, Ref, Me, group_leader(), {erpc, execute_call, 4}, [monitor]},
                {29, Ref, Me, Other, {erlang, apply, 2}, [link, monitor]}]),
    Payload = pick([{'$gen_call', {Me, [alias | Alias]}, {is_auth, node()}},
                    {'$gen_cast', {register, Me}},
                    crypto_bytes(1024),
                    [{I, atom(), I * 3} || I <- lists:seq(1, 100)],
                    #{name => <<"x">>, count => 3, pid => Me, tags => [a, b]},
                    [Ref, erlang, node, []],
                    {Ref, return, {ok, lists:seq(1, 20)}},
                    normal, kill, {'DOWN', Ref, process, Me, noproc}]),
    [Ctl, Payload].
